"""Template filters for money and counts: exact, readable, never hiding a small cost behind "$0.00"."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template

register = template.Library()

_MICRO = Decimal("0.000001")
MINUS = "\u2212"  # a true minus sign: as wide as a digit, so columns of amounts line up


@register.filter
def usd(value) -> str:
    """``$1,234.50``, or six decimals when the amount is not whole cents (``$0.000125``, ``$9.749875``), so
    small costs show and are exact to the micro-dollar."""
    if value is None or value == "":
        return ""
    try:
        amount = Decimal(str(value)).quantize(_MICRO, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return str(value)
    if amount == 0 and Decimal(str(value)) != 0:
        return "<$0.000001" if Decimal(str(value)) > 0 else MINUS + "<$0.000001"
    sign = MINUS if amount < 0 else ""
    amount = abs(amount)
    # Whole cents show as cents; anything finer shows all six places, so a column of amounts lines up.
    places = 2 if amount == amount.quantize(Decimal("0.01")) else 6
    return f"{sign}${amount:,.{places}f}"


@register.filter
def usd_compact(value) -> str:
    """Like ``usd`` without trailing zeros past the cents (``$0.005``, ``$0.0025``): for chart axes."""
    text = usd(value)
    if "." not in text or text.startswith("<") or text[1:].startswith("<"):
        return text
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


@register.filter
def usd_cents(value) -> str:
    """For headline numbers: ``$24.91``, and ``<$0.01`` for a non-zero amount under a cent (exact values are
    in the tables)."""
    if value is None or value == "":
        return ""
    amount = Decimal(str(value))
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if cents == 0 and amount != 0:
        return "<$0.01" if amount > 0 else MINUS + "<$0.01"
    sign = MINUS if cents < 0 else ""
    return f"{sign}${abs(cents):,.2f}"


@register.filter
def price(value) -> str:
    """A price per million tokens: ``$0.27``, ``$15``, ``$0.0375``."""
    if value is None:
        return ""
    amount = Decimal(str(value))
    if amount == amount.to_integral():
        return f"${amount:,.0f}"
    return usd_compact(amount)


@register.filter
def thousands(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)
