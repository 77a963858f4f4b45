"""``POST /v1/chat/completions`` fuzzed with hypothesis against a live gateway.

Bodies are valid requests with a few fields replaced by hostile values (wrong types, huge and negative numbers,
unicode edge cases including lone surrogates, escaped in JSON or raw as invalid UTF-8, deep nesting, bodies over
the size limit), plus raw bytes. Whatever arrives, the gateway never answers 5xx, every refusal is an
OpenAI-shaped error, and a refused request never reaches the upstream (the fake upstream's request log stays
empty for it). Examples are bounded, so the run stays short.
"""

import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.conftest import MAX_BODY, import_model, provider_on
from tests.upstream import FakeUpstream

TOP_FIELDS = [
    "model", "messages", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "stream",
    "stream_options", "tools", "tool_choice", "response_format", "seed", "logprobs", "top_logprobs", "stop", "user",
    "metadata", "frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls", "modalities", "audio",
    "store", "reasoning_effort", "prediction", "service_tier", "functions", "function_call",
]  # fmt: skip
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "function_call"]
EXPECTED = {200, 400, 402, 404, 413}
FUZZ = settings(
    max_examples=100, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
ODD_CHARS = st.sampled_from(
    ["\x00", "\x1b", "\u202e", "\ufeff", "\uffff", "\U0010ffff", "\u0301", "\U0001f600", "\u2028"]
)
TEXT = st.text(alphabet=st.one_of(st.characters(), SURROGATES, ODD_CHARS), max_size=30)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.floats(),  # NaN and infinities too: json.dumps writes them as the non-JSON NaN and Infinity
)
LEAF = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(
    LEAF,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(TEXT, kids, max_size=4)),
    max_leaves=10,
)
DEEP = "__deep__"


@st.composite
def hostile_bodies(draw, models: list[str]) -> bytes:
    body = {
        "model": draw(st.sampled_from([*models, "no-such-model"])),
        "messages": [{"role": "user", "content": "fuzz me"}],
        "max_tokens": draw(st.sampled_from([16, 1000])),
    }
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "drop", "message", "extra-message", "deep", "oversize"]))
        if where == "top":
            body[draw(st.one_of(st.sampled_from(TOP_FIELDS), TEXT))] = draw(VALUES)
        elif where == "drop":
            body.pop(draw(st.sampled_from(["model", "messages", "max_tokens"])), None)
        elif where == "message" and isinstance(body.get("messages"), list) and body["messages"]:
            message = body["messages"][0]
            if isinstance(message, dict):
                message[draw(st.sampled_from(MESSAGE_FIELDS))] = draw(VALUES)
        elif where == "extra-message" and isinstance(body.get("messages"), list):
            body["messages"].append(draw(VALUES))
        elif where == "deep":
            body[draw(st.sampled_from(TOP_FIELDS))] = DEEP
        elif where == "oversize" and isinstance(body.get("messages"), list):
            body["messages"].append(
                {"role": "user", "content": "x" * (MAX_BODY + draw(st.integers(0, 1000)))}
            )
    ascii_only = draw(st.booleans())  # escaped surrogates (\ud800) or raw, invalid UTF-8 bytes
    text = json.dumps(body, ensure_ascii=ascii_only)
    if DEEP in text:
        depth = draw(st.integers(100, 5000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        text = text.replace(f'"{DEEP}"', opener * depth + "1" + closer * depth, 1)
    return text.encode("utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def fuzz_upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fuzz_target(loud_gateway, fuzz_upstream, funded, tmp_path):
    provider = provider_on(fuzz_upstream)
    free = import_model(tmp_path / "free.toml", [provider], [(provider["name"], "echo")])
    paid = import_model(tmp_path / "paid.toml", [], [(provider["name"], "echo")], paid=True)
    _, raw = funded("1")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {raw}"
    for model in (free, paid):  # the gateway has reloaded its catalog: both are served
        assert session.get(f"{loud_gateway.base_url}/models/{model}", timeout=30).status_code == 200
    yield session, [free, paid]
    session.close()


def check(
    gw, upstream: FakeUpstream, session: requests.Session, payload: bytes, **headers
) -> requests.Response:
    upstream.clear()
    answer = session.post(f"{gw.base_url}/chat/completions", data=payload, headers=headers, timeout=30)
    assert answer.status_code < 500, f"{answer.status_code} for {payload[:300]!r}: {answer.text[:500]}"
    assert answer.status_code in EXPECTED, f"{answer.status_code} for {payload[:300]!r}: {answer.text[:500]}"
    if answer.status_code == 200:
        assert upstream.requests, "an accepted request never reached the upstream"
        return answer
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    assert upstream.requests == [], (
        f"a refused request ({answer.status_code}) reached the upstream: {payload[:300]!r}"
    )
    return answer


def test_hostile_json_bodies_never_cause_a_5xx_or_an_upstream_call_when_refused(
    loud_gateway, fuzz_upstream, fuzz_target
):
    session, models = fuzz_target
    seen = set()

    @FUZZ
    @given(payload=hostile_bodies(models))
    def run(payload: bytes) -> None:
        seen.add(
            check(
                loud_gateway, fuzz_upstream, session, payload, **{"Content-Type": "application/json"}
            ).status_code
        )

    run()
    assert {200, 400, 404, 413} <= seen, seen  # it reached the upstream and each kind of refusal


def test_raw_bytes_and_odd_headers_never_cause_a_5xx(loud_gateway, fuzz_upstream, fuzz_target):
    session, _ = fuzz_target
    content_types = st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/json; charset=latin-1",
        ]
    )

    @settings(FUZZ, max_examples=40)
    @given(payload=st.binary(max_size=2000), content_type=content_types)
    def run(payload: bytes, content_type: str) -> None:
        check(loud_gateway, fuzz_upstream, session, payload, **{"Content-Type": content_type})

    run()


BASE = b'{"model":"M","messages":[{"role":"user","content":"x"}]'
EDGE_CASES = [
    ("lone surrogate, escaped", b'{"model":"M","messages":[{"role":"user","content":"\\ud800"}]}', 400),
    (
        "lone surrogate, raw",
        '{"model":"M","messages":[{"role":"user","content":"\ud800"}]}'.encode(errors="surrogatepass"),
        400,
    ),
    ("nesting 30,000 deep", b'{"model":"M","messages":' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400),
    ("nesting 2,000 deep", BASE + b',"metadata":' + b"[" * 2000 + b"]" * 2000 + b"}", 400),
    ("max_tokens 2**63", BASE + b',"max_tokens":9223372036854775808}', 400),
    ("max_tokens -1", BASE + b',"max_tokens":-1}', 400),
    ("n 10**30", BASE + b',"n":1000000000000000000000000000000}', 400),
    (
        "body over the limit",
        b'{"model":"M","messages":[{"role":"user","content":"' + b"x" * MAX_BODY + b'"}]}',
        413,
    ),
    ("NaN temperature", BASE + b',"temperature":NaN}', 400),
    ("not an object", b"[]", 400),
    ("empty", b"", 400),
]


@pytest.mark.parametrize(("label", "payload", "status"), EDGE_CASES, ids=[case[0] for case in EDGE_CASES])
def test_known_edge_cases(loud_gateway, fuzz_upstream, fuzz_target, label, payload, status):
    session, models = fuzz_target
    answer = check(loud_gateway, fuzz_upstream, session, payload.replace(b'"M"', f'"{models[0]}"'.encode()))
    assert answer.status_code == status, answer.text
