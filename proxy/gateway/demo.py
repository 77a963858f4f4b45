"""The demo provider: answers in-process, so a fresh install works with no API key and no network.

Chat and legacy completions reply deterministically with what they were sent, streamed word by word;
embeddings are deterministic unit vectors derived from each input's text. Token counts are honest: they come
from the same local tokenizer the gateway uses when an upstream sends no usage.
"""

import hashlib
import math
import re
import struct
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


def respond(path: str, body: dict, stream: bool) -> DemoResponse:
    """The demo's answer to a request for ``path`` (the upstream path of an OpenAI-style provider)."""
    if path == "/embeddings":
        return DemoResponse(orjson.dumps(embeddings(body)))
    if path == "/completions":
        return _completion(body, stream)
    return _chat(body, stream)


def _chat(body: dict, stream: bool) -> DemoResponse:
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


# --- embeddings ----------------------------------------------------------------------------------------------

DEMO_DIMENSIONS = 16


def embedding_vector(item: str | list, dimensions: int = DEMO_DIMENSIONS) -> list[float]:
    """A unit vector from the input's hash: the same input always embeds the same, and different ones differ."""
    seed = orjson.dumps(item)
    raw = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(math.ceil(dimensions * 4 / 32)))
    values = [v / 2**31 for v in struct.unpack(f"<{dimensions}i", raw[: dimensions * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embeddings(body: dict) -> dict:
    """Floats always, as many upstreams answer (the gateway encodes base64 itself when it was asked for)."""
    items = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if items and all(isinstance(t, int) for t in items):
        items = [items]  # one input given as token ids
    dimensions = body.get("dimensions") or DEMO_DIMENSIONS
    data = [{"object": "embedding", "index": i, "embedding": embedding_vector(item, dimensions)}
            for i, item in enumerate(items)]  # fmt: skip
    used = sum(tokens.count_text(item) if isinstance(item, str) else len(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }


# --- legacy completions --------------------------------------------------------------------------------------


def _prompt_texts(body: dict) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(t, int) for t in prompt):
        return [" ".join(f"t{t}" for t in prompt)]
    return [p if isinstance(p, str) else " ".join(f"t{t}" for t in p) for p in prompt or [""]]


def _completion(body: dict, stream: bool) -> DemoResponse:
    limit = body.get("max_tokens")
    limit = 16 if limit is None else limit
    n = body.get("n") or 1
    choices: list[dict] = []
    used_prompt = used_completion = 0
    for i, text in enumerate(_prompt_texts(body)):
        words = ("This is the Inference Space demo model. You wrote: " + " ".join(text.split())).split(" ")
        finish = "length" if len(words) > limit else "stop"
        reply = " " + " ".join(words[:limit]) if limit else ""
        used_prompt += tokens.count_text(text)
        for j in range(n):
            echoed = text + reply if body.get("echo") else reply
            choices.append({"text": echoed + (body.get("suffix") or ""), "index": i * n + j, "logprobs": None,
                            "finish_reason": finish})  # fmt: skip
            used_completion += tokens.count_text(reply)
    common = {"id": f"cmpl-demo-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
              "model": body["model"]}  # fmt: skip
    usage = {"prompt_tokens": used_prompt, "completion_tokens": used_completion,
             "total_tokens": used_prompt + used_completion}  # fmt: skip
    if not stream:
        return DemoResponse(orjson.dumps({**common, "choices": choices, "usage": usage}))
    lines: list[bytes] = []
    for choice in choices:
        pieces = re.findall(r"\s*\S+", choice["text"]) or [""]  # word by word, each with its leading space
        for k, piece in enumerate(pieces):
            ended = choice["finish_reason"] if k == len(pieces) - 1 else None
            event = {"text": piece, "index": choice["index"], "logprobs": None, "finish_reason": ended}
            lines.append(b"data: " + orjson.dumps({**common, "choices": [event]}) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        lines.append(b"data: " + orjson.dumps({**common, "choices": [], "usage": usage}) + b"\n\n")
    lines.append(b"data: [DONE]\n\n")
    return DemoResponse(lines=[part for line in lines for part in (line[:-1], b"\n")])
