from decimal import Decimal

from portal.accounts.limits import effective_limits


def limits(**kwargs):
    base = {"key_rpm": None, "key_rpd": None, "user_rpm": None, "user_rpd": None, "purchased": Decimal(0)}
    return effective_limits(**{**base, **kwargs})


def test_defaults_and_the_tier_rule():
    assert limits() == (20, 50, True)
    assert limits(purchased=Decimal("9.99")) == (20, 50, True)
    assert limits(purchased=Decimal(10)) == (20, 1000, False)


def test_a_key_limit_applies_but_never_above_its_owners():
    assert limits(key_rpm=100, key_rpd=500) == (100, 500, True)
    assert limits(user_rpm=5, user_rpd=7) == (5, 7, True)
    assert limits(key_rpm=100, user_rpm=5, key_rpd=3, user_rpd=7) == (5, 3, True)
    assert limits(user_rpd=2000, purchased=Decimal(50)) == (20, 2000, False)
