"""Fixtures for the management API tests: callers of each kind, in-process (DRF's client) and over HTTP."""

import pytest
import requests
from django.test import Client
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def mgmt_key(owner, make_key):
    """A management key of ``owner``: (row, raw)."""
    return make_key(owner=owner, management=True, name="automation")


def key_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture(params=["session", "management_key"])
def caller(request, owner, mgmt_key) -> APIClient:
    """The owner's client, once logged in with a dashboard session and once with a management key."""
    return session_client(owner) if request.param == "session" else key_client(mgmt_key[1])


def http_session(user) -> requests.Session:
    """A requests session carrying a real dashboard login (the gateway shares the session table) and a CSRF
    cookie and header, as a browser page would send them."""
    client = Client()
    client.force_login(user)
    token = get_random_string(32)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    session.cookies.set("csrftoken", token)
    session.headers["X-CSRFToken"] = token
    return session


def http_key(raw: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw}"
    return session


def error_of(response) -> dict:
    """The error object of an API answer, checking the one shape every error has."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    return body["error"]
