"""Reading chat completions' answers and chunks, and writing named stream events: what every translation
from chat completions into another API's stream needs. Pure."""

import orjson


def first_choice(chunk: dict) -> dict | None:
    """The choice a bridged request asked for: a bridge asks chat for one; any other is not part of it."""
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return None


def text_of(value: object) -> str:
    """Chat's text: a string, or (from a few upstreams) a list of text parts."""
    if isinstance(value, str):
        return value
    parts = value if isinstance(value, list) else ()
    return "".join(p.get("text") or "" for p in parts if isinstance(p, dict) and p.get("type") == "text")


def reasoning_text(message: dict) -> str:
    """A message's or a delta's reasoning. Some upstreams send the same text under both names; one is enough."""
    for key in ("reasoning_content", "reasoning"):
        text = message.get(key)
        if isinstance(text, str) and text:
            return text
    return ""


def sse_event(event: dict) -> bytes:
    """One stream event as server-sent event bytes, named by its type (no [DONE] follows such streams)."""
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
