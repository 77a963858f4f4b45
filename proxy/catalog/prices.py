"""A model's price sheet: USD per million tokens of each kind, and a fee per request. Pure; exact Decimals.

The catalog may leave the cache's prices unset: cache reads and 5-minute cache writes then cost the input
price, and 1-hour writes the 5-minute price, so a model priced before caching was billed apart keeps its
bill. The cost of a request under a sheet is billing/pricing.py's.
"""

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Prices:
    input: Decimal  # uncached input
    output: Decimal  # reasoning included
    cached_input: Decimal  # cache reads
    cache_write: Decimal  # cache writes kept 5 minutes
    cache_write_1h: Decimal  # cache writes kept 1 hour
    request: Decimal = ZERO  # USD per request, not per million tokens

    @classmethod
    def of(
        cls, *, input: Decimal, output: Decimal, cached_input: Decimal | None = None,
        cache_write: Decimal | None = None, cache_write_1h: Decimal | None = None, request: Decimal = ZERO,
    ) -> "Prices":  # fmt: skip
        """A sheet with the unset prices defaulted."""
        write = input if cache_write is None else cache_write
        return cls(
            input=input, output=output, cached_input=input if cached_input is None else cached_input,
            cache_write=write, cache_write_1h=write if cache_write_1h is None else cache_write_1h,
            request=request,
        )  # fmt: skip

    @property
    def highest_input(self) -> Decimal:
        """What an input token costs at most, whichever bucket the provider puts it in."""
        return max(self.input, self.cached_input, self.cache_write, self.cache_write_1h)

    @property
    def is_free(self) -> bool:
        """Nothing to pay: no credits needed."""
        return self.output == 0 and self.highest_input == 0 and self.request == 0
