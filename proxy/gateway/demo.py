"""The demo provider: answers in-process, so a fresh install works with no API key and no network.

The reply is deterministic, built from the last user message, and streamed word by word. Token counts are
honest: they come from the same local tokenizer the gateway uses when an upstream sends no usage.
"""

import time
import uuid

import orjson

from proxy.gateway import tokens

_MAX_WORDS = 200


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return " ".join(str(content or "").split())
    return ""


def reply_words(body: dict) -> tuple[list[str], str]:
    """The reply as words (each after the first with its leading space), and the finish reason."""
    text = _last_user_text(body.get("messages") or [])
    reply = (
        f"This is the Inference Space demo model. You said: {text}" if text else "Hello from the demo model."
    )
    words = reply.split(" ")
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or _MAX_WORDS
    finish = "stop"
    if len(words) > limit:
        words, finish = words[:limit], "length"
    return [w if i == 0 else " " + w for i, w in enumerate(words)], finish


def _usage(body: dict, words: list[str]) -> dict:
    prompt = tokens.count_messages(body.get("messages") or [])
    completion = tokens.count_completion(words)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Lines:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = iter(lines)

    async def readline(self) -> bytes:
        return next(self._lines, b"")


class DemoResponse:
    """Looks like an aiohttp response to the relay: ``status``, ``read()``, ``content.readline()``."""

    status = 200

    def __init__(self, payload: bytes | None = None, lines: list[bytes] | None = None) -> None:
        self._payload = payload or b""
        self.content = _Lines(lines or [])

    async def read(self) -> bytes:
        return self._payload

    def close(self) -> None:
        return None

    def release(self) -> None:
        return None


def respond(body: dict, stream: bool) -> DemoResponse:
    words, finish = reply_words(body)
    common = {
        "id": f"chatcmpl-demo-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": body["model"],
    }
    usage = _usage(body, words)
    if not stream:
        message = {"role": "assistant", "content": "".join(words), "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
        return DemoResponse(
            orjson.dumps({**common, "object": "chat.completion", "choices": [choice], "usage": usage})
        )
    chunk = {**common, "object": "chat.completion.chunk"}

    def event(delta: dict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + orjson.dumps({**chunk, "choices": [choice]}) + b"\n\n"

    lines = [event({"role": "assistant", "content": ""})]
    lines += [event({"content": word}) for word in words]
    lines.append(event({}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        lines.append(b"data: " + orjson.dumps({**chunk, "choices": [], "usage": usage}) + b"\n\n")
    lines.append(b"data: [DONE]\n\n")
    # One line per read, as the SSE reader expects: split each event into its data line and blank line.
    return DemoResponse(lines=[part for line in lines for part in (line[:-1], b"\n")])
