"""One canonical usage per request, from whatever an upstream reported. Pure functions, no I/O.

Providers count the same things differently:

- OpenAI chat completions: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` (reads of its
  automatic cache), and ``completion_tokens`` includes ``completion_tokens_details.reasoning_tokens``. Some
  OpenAI-compatible upstreams add ``prompt_tokens_details.cache_write_tokens`` (cache writes, also part of
  the prompt).
- DeepSeek: ``prompt_cache_hit_tokens`` and ``prompt_cache_miss_tokens``, which add up to ``prompt_tokens``.
- Gemini, through its OpenAI-compatible endpoint: cached tokens as OpenAI's, but its thinking tokens may be
  left out of ``completion_tokens`` while ``total_tokens`` counts them: the output is then what the total
  says beyond the prompt.
- The Responses API: ``input_tokens`` with ``input_tokens_details.cached_tokens``, ``output_tokens`` with
  ``output_tokens_details.reasoning_tokens``; as with Gemini's chat, an upstream that leaves thinking out of
  ``output_tokens`` still counts it in ``total_tokens``, which then says the output.
- Anthropic: ``input_tokens`` EXCLUDES ``cache_read_input_tokens`` and ``cache_creation_input_tokens``; the
  writes are split by ``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens`` (all
  5-minute when the split is missing; what the split leaves out of the total is 5-minute too).

Each reader returns a ``Usage`` or None when the object is not usage (missing, negative or non-integer
counts): the caller then counts locally. Parts that don't add up (cached tokens beyond the prompt, say) are
capped at their whole, so no bucket is ever negative and nothing is billed twice.
"""

from dataclasses import dataclass

MAX = 2**31 - 1  # what a usage record's token columns hold


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by how they are billed. ``input`` is the uncached input only; ``reasoning`` is a part of
    ``output`` (reasoning is billed as output)."""

    input: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning: int = 0

    @property
    def prompt(self) -> int:
        """All of the input, cached or not: what OpenAI calls ``prompt_tokens``."""
        return self.input + self.cache_read + self.cache_write_5m + self.cache_write_1h

    def clamped(self) -> "Usage":
        """Every count within what a record holds."""
        return Usage(*(min(max(v, 0), MAX) for v in self.counts()))

    def counts(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.input,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
            self.output,
            self.reasoning,
        )


def _count(value: object) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX else None


def _part(details: object, key: str) -> int:
    """An optional detail count; anything that isn't a count is 0."""
    return (_count(details.get(key)) or 0) if isinstance(details, dict) else 0


def from_openai(usage: object) -> Usage | None:
    """Chat completions' and legacy completions' usage, from OpenAI, DeepSeek, Gemini and the like."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    read = _part(details, "cached_tokens") or (_count(usage.get("prompt_cache_hit_tokens")) or 0)
    read = min(read, prompt)
    write = min(_part(details, "cache_write_tokens"), prompt - read)
    output = completion
    total = _count(usage.get("total_tokens"))
    if total is not None and total > prompt + completion:  # thinking left out of completion_tokens
        output = total - prompt
    reasoning = min(_part(usage.get("completion_tokens_details"), "reasoning_tokens"), output)
    return Usage(input=prompt - read - write, cache_read=read, cache_write_5m=write, output=output,
                 reasoning=reasoning)  # fmt: skip


def from_responses(usage: object) -> Usage | None:
    """The Responses API's usage."""
    if not isinstance(usage, dict):
        return None
    prompt, output = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if prompt is None or output is None:
        return None
    details = usage.get("input_tokens_details")
    read = min(_part(details, "cached_tokens"), prompt)
    write = min(_part(details, "cache_write_tokens"), prompt - read)
    total = _count(usage.get("total_tokens"))
    if total is not None and total > prompt + output:  # thinking left out of output_tokens
        output = total - prompt
    reasoning = min(_part(usage.get("output_tokens_details"), "reasoning_tokens"), output)
    return Usage(input=prompt - read - write, cache_read=read, cache_write_5m=write, output=output,
                 reasoning=reasoning)  # fmt: skip


def from_anthropic(usage: object) -> Usage | None:
    """Anthropic's usage: three input buckets that add up to the input, and the output."""
    if not isinstance(usage, dict):
        return None
    uncached, output = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if uncached is None or output is None:
        return None
    read = _part(usage, "cache_read_input_tokens")
    written = _part(usage, "cache_creation_input_tokens")
    write_5m, write_1h = written, 0
    split = usage.get("cache_creation")
    if isinstance(split, dict) and any(split.get(key) is not None for key in _SPLIT):
        # The breakdown is what each bucket is billed by, so it stands over the total; but Anthropic has
        # answered a total with a 0/0 breakdown (web search turns), so writes it leaves unplaced are 5-minute.
        write_5m, write_1h = (_part(split, key) for key in _SPLIT)
        write_5m += max(written - write_5m - write_1h, 0)
    # Thinking, where an Anthropic-style upstream reports it apart: a part of the output.
    reasoning = min(_part(usage.get("output_tokens_details"), "thinking_tokens"), output)
    return Usage(input=uncached, cache_read=read, cache_write_5m=write_5m, cache_write_1h=write_1h,
                 output=output, reasoning=reasoning)  # fmt: skip


_SPLIT = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
