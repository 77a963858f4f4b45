"""Who is signed in, for the type checker: the views behind ``@login_required`` and the admin act for a User."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from portal.accounts.models import User


class AuthedRequest(HttpRequest):
    """The request of a view behind ``@login_required``: by the time the view runs, its user is signed in."""

    user: User


def acting_user(request: HttpRequest) -> User:
    """The operator behind an admin request (the admin site lets only signed-in staff in)."""
    user = request.user
    if not user.is_authenticated:
        raise PermissionDenied
    return user
