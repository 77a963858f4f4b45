"""Fixtures for the admin tests: an operator and a test client logged in as them."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client


@pytest.fixture
def operator(make_user):
    return make_user(is_staff=True)  # a superuser, as `create_account --staff` makes them


@pytest.fixture
def ops(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def run_action(client: Client, changelist: str, action: str, objects, **form):
    """Post an admin action for ``objects``; extra ``form`` fields answer its intermediate page."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects], **form}
    if form:
        data["apply"] = "1"
    return client.post(changelist, data)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []
