"""Local token counts, for upstreams that send no usage and for the worst-case credit hold.

The o200k_base vocabulary ships inside the tokenizer's package, so counting works offline; nothing is
downloaded at run time. Counts follow OpenAI's chat format: 3 tokens of framing per message and 3 to prime the
reply. Other vendors' tokenizers differ by a few percent; the upstream's own usage always wins when present.
"""

from functools import cache

import bpe_openai
import orjson

PER_MESSAGE = 3
REPLY_PRIMING = 3
IMAGE_TOKENS = 85  # OpenAI's charge for a low-detail image; the estimate for any non-text part but a file
BYTES_PER_FILE_TOKEN = 16
# The tokenizer refuses a text of 1,000,000 characters or one of over 200,000 tokens. No character encodes to
# more than 4 tokens (one per UTF-8 byte at worst), so a piece of 40,000 characters is always accepted, and a
# longer text is counted piece by piece. Pieces are cut before a space where one is near, so that a word is
# not split in two: each cut can add at most a token to the count of the whole text.
PIECE_CHARS = 40_000
_CUT_WINDOW = 1_000


@cache
def _encoding():
    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    """Tokens in ``text``, however long it is."""
    if len(text) <= PIECE_CHARS:
        return len(_encoding().encode_ordinary(text)) if text else 0
    return sum(len(_encoding().encode_ordinary(piece)) for piece in pieces(text))


def pieces(text: str, size: int = PIECE_CHARS):
    """``text`` in consecutive pieces of at most ``size`` characters, cut before a space where one is near."""
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            cut = text.rfind(" ", end - _CUT_WINDOW, end)
            if cut > start:
                end = cut
        yield text[start:end]
        start = end


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return count_text(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text") if part.get("type") in ("text", "refusal") else None
                total += count_text(text) if isinstance(text, str) else _part_tokens(part)
    return total


def _part_tokens(part: dict) -> int:
    """A non-text part: an image at IMAGE_TOKENS; a file (a PDF, say) by its size, since providers bill each
    of its pages as text and images, at a token per BYTES_PER_FILE_TOKEN bytes of its base64 at the least."""
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    return max(IMAGE_TOKENS, len(data) // BYTES_PER_FILE_TOKEN) if isinstance(data, str) else IMAGE_TOKENS


def count_tools(tools: object) -> int:
    """The tools a request offers: their names, descriptions and schemas go to the model as input too."""
    if not isinstance(tools, list) or not tools:
        return 0
    return count_text(orjson.dumps(tools).decode())


def count_messages(messages: list) -> int:
    total = REPLY_PRIMING
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += PER_MESSAGE + _content_tokens(message.get("content"))
        if isinstance(message.get("name"), str):
            total += count_text(message["name"])
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                total += count_text(str(fn.get("name") or "")) + count_text(str(fn.get("arguments") or ""))
    return total


def count_completion(pieces: list[str]) -> int:
    return count_text("".join(pieces))
