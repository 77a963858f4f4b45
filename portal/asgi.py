"""The one ASGI application: ``/v1`` and the health probes go to the lean gateway (proxy.gateway.app),
everything else to Django.

Both doors share settings, models and services; one uvicorn command serves both.
"""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

django_app = get_asgi_application()
if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # only the mode in use is imported

    django_app = ASGIStaticFilesHandler(django_app)  # straight from the source folders, no collectstatic
else:
    from servestatic import ServeStaticASGI

    # Production: the collected files (manage.py collectstatic), with long cache headers, from this process.
    django_app = ServeStaticASGI(django_app, root=settings.STATIC_ROOT, prefix=settings.STATIC_URL)

from proxy.gateway.app import PROBES, lifespan, probe  # noqa: E402
from proxy.gateway.app import app as gateway_app  # noqa: E402  (needs Django set up first)


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
        await gateway_app(scope, receive, send)
    elif scope["type"] == "http" and scope["path"] in PROBES:
        await probe(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    else:
        await django_app(scope, receive, send)
