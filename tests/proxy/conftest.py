"""Fixtures shared by the endpoint tests."""

from decimal import Decimal

import pytest

from tests.proxy.test_chat import HIGH_LIMITS


@pytest.fixture
def funded(make_user, make_key):
    """A raw key with high limits, on an account with 10 USD."""
    from billing.services import account_for, credits_grant

    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(10), reason="test funds", actor=None)
    return make_key(owner=user, **HIGH_LIMITS)[1]
