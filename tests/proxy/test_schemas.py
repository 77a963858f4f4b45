"""Validation of chat completion request bodies: OpenAI's contract, our ``param`` names, and robustness."""

import copy
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.gateway.errors import ApiError
from proxy.gateway.schemas import MAX_TOKENS_LIMIT, ChatRequest, parse_chat_request, validate_chat_request
from tests.proxy.bad_bodies import BAD_BODIES, GOOD_BODIES
from tests.spec import validator_for

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _refusal(raw: bytes) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_chat_request(raw)
    return caught.value


def _body(**fields: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}], **fields}


# --- hand-written bodies ------------------------------------------------------------------------------------


def test_the_tables_are_big_enough_and_unique() -> None:
    assert len(BAD_BODIES) >= 35
    assert len(GOOD_BODIES) >= 12
    assert len({d for d, _, _ in BAD_BODIES}) == len(BAD_BODIES)
    assert len({d for d, _ in GOOD_BODIES}) == len(GOOD_BODIES)


@pytest.mark.parametrize(("description", "raw", "param"), BAD_BODIES, ids=[d for d, _, _ in BAD_BODIES])
def test_a_bad_body_is_a_400_naming_the_field(description: str, raw: bytes, param: str | None) -> None:
    error = _refusal(raw)
    assert (error.status, error.type, error.code) == (400, "invalid_request_error", None)
    assert error.param == param, error.message
    assert error.message
    body = orjson.loads(error.render())["error"]
    assert body == {"message": error.message, "type": "invalid_request_error", "param": param, "code": None}


@pytest.mark.parametrize(("description", "body"), GOOD_BODIES, ids=[d for d, _ in GOOD_BODIES])
def test_a_good_body_passes_untouched(description: str, body: dict) -> None:
    before = copy.deepcopy(body)
    request = validate_chat_request(body)
    assert request.body is body
    assert body == before
    assert request.model == body["model"]
    assert request.messages is body["messages"]
    assert parse_chat_request(orjson.dumps(body)).body == body


@pytest.mark.parametrize(("description", "body"), GOOD_BODIES, ids=[d for d, _ in GOOD_BODIES])
def test_a_good_body_is_valid_against_openais_spec(description: str, body: dict) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator_for("CreateChatCompletionRequest").iter_errors(body)
    ]
    assert not errors


def test_the_spec_validator_is_not_vacuous() -> None:
    validator = validator_for("CreateChatCompletionRequest")
    assert validator.is_valid(_body(stop=None, temperature=None))  # nullable rewrite applied
    for bad in (
        _body(messages=[]),
        _body(temperature=3.5),
        _body(stop=["a"] * 5),
        {"messages": _body()["messages"]},
    ):
        assert not validator.is_valid(bad)


def test_error_messages_say_what_is_wrong_and_what_is_allowed() -> None:
    assert _refusal(orjson.dumps(_body(temperature=3.5))).message == (
        "temperature must be a number between 0 and 2, got 3.5"
    )
    message = _refusal(orjson.dumps(_body(messages=[{"role": "bot", "content": "x"}]))).message
    assert "'bot'" in message and "'assistant'" in message
    # A huge value is summarised, never echoed back whole.
    assert len(_refusal(orjson.dumps(_body(model=["x" * 100_000]))).message) < 200
    assert len(_refusal(orjson.dumps(_body(temperature="x" * 100_000))).message) < 200


# --- the ChatRequest fields ---------------------------------------------------------------------------------


def test_defaults_for_a_minimal_body() -> None:
    body = _body()
    assert validate_chat_request(body) == ChatRequest(
        model="gpt-4o-mini",
        messages=body["messages"],
        stream=False,
        include_usage=False,
        max_tokens=None,
        n=1,
        body=body,
    )


@pytest.mark.parametrize(
    ("fields", "stream", "include_usage"),
    [
        ({"stream": True}, True, False),
        ({"stream": True, "stream_options": {"include_usage": True}}, True, True),
        ({"stream": True, "stream_options": {"include_usage": False}}, True, False),
        ({"stream": True, "stream_options": None}, True, False),
        ({"stream": True, "stream_options": {}}, True, False),
        ({"stream": None}, False, False),
        ({"stream": False}, False, False),
    ],
)
def test_stream_and_include_usage(fields: dict, stream: bool, include_usage: bool) -> None:
    request = validate_chat_request(_body(**fields))
    assert (request.stream, request.include_usage) == (stream, include_usage)


@pytest.mark.parametrize(
    ("fields", "max_tokens"),
    [
        ({}, None),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50}, 50),
        ({"max_completion_tokens": 50, "max_tokens": 100}, 50),
        ({"max_completion_tokens": None, "max_tokens": 100}, 100),
        ({"max_tokens": MAX_TOKENS_LIMIT}, MAX_TOKENS_LIMIT),
    ],
)
def test_max_completion_tokens_wins_over_max_tokens(fields: dict, max_tokens: int | None) -> None:
    assert validate_chat_request(_body(**fields)).max_tokens == max_tokens


@pytest.mark.parametrize(("fields", "n"), [({}, 1), ({"n": None}, 1), ({"n": 3}, 3), ({"n": 128}, 128)])
def test_n_defaults_to_one(fields: dict, n: int) -> None:
    assert validate_chat_request(_body(**fields)).n == n


# --- hostile input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"NaN", b'{"a": Infinity}', b"\xff", b"{} {}"])
def test_invalid_json_is_a_400_without_param(raw: bytes) -> None:
    error = _refusal(raw)
    assert (error.status, error.param, error.message) == (400, None, "The request body is not valid JSON.")


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"null", b"1", b"true", b"[{}]"])
def test_json_that_is_not_an_object_is_a_400(raw: bytes) -> None:
    error = _refusal(raw)
    assert (error.status, error.param) == (400, None)
    assert "JSON object" in error.message


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000])
def test_deep_nesting_is_invalid_json_not_a_crash(raw: bytes) -> None:
    assert _refusal(raw).param is None


def test_deep_nesting_in_a_pass_through_field_is_not_walked() -> None:
    nested: object = {}
    for _ in range(100_000):
        nested = {"a": nested}
    tools = [{"type": "function", "function": {"name": "f", "parameters": nested}}]
    assert validate_chat_request(_body(tools=tools, extra=nested)).body["extra"] is nested


@pytest.mark.parametrize(
    "value", [10**30, 2**64, -(10**30), 10**5000], ids=["1e30", "2**64", "-1e30", "1e5000"]
)
def test_huge_integers_are_refused(value: int) -> None:
    for field in ("max_tokens", "max_completion_tokens", "n", "seed", "temperature"):
        with pytest.raises(ApiError) as caught:
            validate_chat_request(_body(**{field: value}))
        assert (caught.value.status, caught.value.param) == (400, field)


def test_huge_integer_in_json_is_refused() -> None:
    for digits in (b"18446744073709551615", b"1" + b"0" * 30, b"9" * 400):
        raw = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": ' + digits + b"}"
        assert _refusal(raw).param in ("max_tokens", None)


# --- property tests: nothing but ApiError or a ChatRequest --------------------------------------------------

KNOWN_FIELDS = [
    "model", "messages", "temperature", "top_p", "n", "presence_penalty", "frequency_penalty", "stop",
    "max_tokens", "max_completion_tokens", "seed", "logprobs", "top_logprobs", "logit_bias", "stream",
    "stream_options", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format", "metadata",
    "modalities", "reasoning_effort", "service_tier", "store", "prediction", "audio", "web_search_options",
    "verbosity", "function_call", "functions", "safety_identifier", "prompt_cache_key", "moderation",
]  # fmt: skip
MESSAGE_KEYS = ["role", "content", "type", "text", "name", "function", "tool_calls", "id", "url", "image_url"]
KEYS = st.sampled_from(KNOWN_FIELDS + MESSAGE_KEYS)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["user", "assistant", "tool", "text", "function", "image_url", "json_schema", "auto"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(KEYS | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=25,
)


def _outcome(raw: bytes) -> ChatRequest | ApiError:
    try:
        return parse_chat_request(raw)
    except ApiError as error:
        assert error.status == 400
        assert error.type == "invalid_request_error"
        return error


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_400_or_a_request(raw: bytes) -> None:
    _outcome(raw)


@SETTINGS
@given(JSON_VALUES)
def test_arbitrary_json_gives_a_400_or_a_request(value: object) -> None:
    _outcome(orjson.dumps(value))


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(KNOWN_FIELDS), JSON_VALUES, max_size=6), st.lists(JSON_VALUES, max_size=3)
)
def test_arbitrary_values_in_known_fields_give_a_400_or_a_request(fields: dict, messages: list) -> None:
    body = _body(**fields)
    if "messages" not in fields and messages:
        body["messages"] = [{"role": "user", "content": "x"}, *messages]
    outcome = _outcome(orjson.dumps(body))
    if isinstance(outcome, ChatRequest):
        assert outcome.body == body


# --- property tests: valid bodies pass ----------------------------------------------------------------------

TEXT = st.text(max_size=12)
NAME = st.from_regex(re.compile(r"[a-zA-Z0-9_-]{1,64}"), fullmatch=True)
TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT})
IMAGE_PART = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries(
            {"url": TEXT}, optional={"detail": st.sampled_from(["auto", "low", "high"])}
        ),
    }
)
AUDIO_PART = st.fixed_dictionaries(
    {
        "type": st.just("input_audio"),
        "input_audio": st.fixed_dictionaries({"data": TEXT, "format": st.sampled_from(["wav", "mp3"])}),
    }
)
TOOL_CALL = st.fixed_dictionaries(
    {
        "id": TEXT,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": NAME, "arguments": TEXT}),
    }
)
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer"]),
            "content": TEXT | st.lists(TEXT_PART, min_size=1, max_size=3),
        },
        optional={"name": TEXT},
    ),
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": TEXT | st.lists(TEXT_PART | IMAGE_PART | AUDIO_PART, min_size=1, max_size=3),
        },
        optional={"name": TEXT},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": TEXT}, optional={"refusal": st.none() | TEXT}
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "tool_calls": st.lists(TOOL_CALL, min_size=1, max_size=2)},
        optional={"content": st.none()},
    ),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": TEXT, "content": TEXT | st.lists(TEXT_PART, min_size=1)}
    ),
)
FUNCTION_TOOL = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": NAME}, optional={"description": TEXT, "strict": st.booleans()}
        ),
    }
)
RESPONSE_FORMAT = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": NAME}, optional={"schema": st.just({"type": "object"}), "strict": st.booleans()}
            ),
        }
    ),
)
OPTIONAL_FIELDS = {
    "temperature": st.none() | st.floats(0, 2) | st.integers(0, 2),
    "top_p": st.none() | st.floats(0, 1),
    "n": st.none() | st.integers(1, 128),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.integers(-2, 2),
    "stop": st.none() | TEXT | st.lists(TEXT, min_size=1, max_size=4),
    "max_tokens": st.integers(1, MAX_TOKENS_LIMIT),
    "max_completion_tokens": st.integers(1, MAX_TOKENS_LIMIT),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "logit_bias": st.dictionaries(st.integers(0, 200_000).map(str), st.integers(-100, 100), max_size=3),
    "user": TEXT,
    "tools": st.lists(FUNCTION_TOOL, max_size=3),
    "tool_choice": st.sampled_from(["none", "auto", "required"])
    | st.builds(lambda n: {"type": "function", "function": {"name": n}}, NAME),
    "parallel_tool_calls": st.booleans(),
    "response_format": RESPONSE_FORMAT,
    "metadata": st.dictionaries(st.text(max_size=64), st.text(max_size=20), max_size=16),
    "store": st.none() | st.booleans(),
    "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high"]),
    "verbosity": st.sampled_from(["low", "medium", "high"]),
    "service_tier": st.sampled_from(["auto", "default", "flex", "priority"]),
}


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict:
    body = draw(
        st.fixed_dictionaries(
            {
                "model": st.text(min_size=1, max_size=20),
                "messages": st.lists(MESSAGE, min_size=1, max_size=4),
            },
            optional=OPTIONAL_FIELDS,
        )
    )
    # Fields that are only allowed together with another one.
    if draw(st.booleans()):
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    if draw(st.booleans()):
        body["logprobs"] = True
        body["top_logprobs"] = draw(st.integers(0, 20))
    return body


@SETTINGS
@given(valid_bodies())
def test_generated_valid_bodies_pass(body: dict) -> None:
    request = parse_chat_request(orjson.dumps(body))
    assert request.body == body
    assert request.stream is (body.get("stream") is True)
    assert request.include_usage is bool(
        request.stream and (body.get("stream_options") or {}).get("include_usage")
    )
    expected = body.get("max_completion_tokens")
    assert request.max_tokens == (expected if expected is not None else body.get("max_tokens"))
    assert request.n == (body.get("n") or 1)


@settings(max_examples=60, deadline=None)
@given(valid_bodies())
def test_generated_valid_bodies_are_valid_against_openais_spec(body: dict) -> None:
    # Keeps the generator honest: what it calls valid, OpenAI's spec calls valid too.
    assert validator_for("CreateChatCompletionRequest").is_valid(body)


# --- property tests: one broken field is named in param -----------------------------------------------------

NOT_NUMBER = (
    st.text(max_size=5)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
NOT_INT = NOT_NUMBER | st.floats(allow_nan=False, allow_infinity=False)
NOT_BOOL = (
    st.text(max_size=5)
    | st.integers()
    | st.floats(allow_nan=False)
    | st.lists(st.booleans(), max_size=2)
    | st.just({})
)
NOT_STR = (
    st.integers() | st.floats(allow_nan=False) | st.booleans() | st.lists(TEXT, max_size=2) | st.just({})
)


def _outside(low: float, high: float) -> st.SearchStrategy:
    finite = {"allow_nan": False, "allow_infinity": False}
    return st.floats(max_value=low, exclude_max=True, **finite) | st.floats(
        min_value=high, exclude_min=True, **finite
    )


MUTATIONS: dict[str, st.SearchStrategy] = {
    "model": NOT_STR | st.just("") | st.none(),
    "messages": st.sampled_from([[], None, "hi", {}, 3]),
    "temperature": NOT_NUMBER | _outside(0, 2),
    "top_p": NOT_NUMBER | _outside(0, 1),
    "presence_penalty": NOT_NUMBER | _outside(-2, 2),
    "frequency_penalty": NOT_NUMBER | _outside(-2, 2) | st.integers(min_value=3),
    "n": NOT_INT | st.integers(max_value=0) | st.integers(min_value=129, max_value=2**64),
    "max_tokens": NOT_INT
    | st.integers(max_value=0)
    | st.integers(min_value=MAX_TOKENS_LIMIT + 1, max_value=2**64),
    "max_completion_tokens": NOT_INT | st.integers(max_value=0, min_value=-(2**63)),
    "seed": NOT_INT | st.integers(min_value=2**63, max_value=2**64 - 1),
    "stop": st.integers()
    | st.booleans()
    | st.just({})
    | st.just([])
    | st.lists(TEXT, min_size=5, max_size=8)
    | st.lists(st.integers(), min_size=1, max_size=3),
    "logprobs": NOT_BOOL,
    "top_logprobs": NOT_INT | st.integers(max_value=-1) | st.integers(min_value=21),
    "logit_bias": NOT_NUMBER.filter(lambda v: not isinstance(v, dict)),
    "stream": NOT_BOOL,
    "stream_options": NOT_BOOL.filter(lambda v: not isinstance(v, dict)),
    "user": NOT_STR | st.none(),
    "tools": NOT_NUMBER.filter(lambda v: not isinstance(v, list)),
    "tool_choice": st.text(max_size=6).filter(lambda v: v not in ("none", "auto", "required"))
    | st.integers()
    | st.none()
    | st.just([]),
    "parallel_tool_calls": NOT_BOOL | st.none(),
    "response_format": NOT_STR.filter(lambda v: not isinstance(v, dict)) | st.none() | st.text(max_size=5),
    "metadata": NOT_NUMBER.filter(lambda v: not isinstance(v, dict)),
    "reasoning_effort": NOT_STR | st.sampled_from(["extreme", "LOW", ""]),
    "service_tier": NOT_STR | st.just("gold"),
    "verbosity": NOT_STR | st.just("loud"),
    "store": NOT_BOOL,
    "modalities": NOT_NUMBER.filter(lambda v: not isinstance(v, list)) | st.just(["video"]),
    "messages[0].role": NOT_STR | st.none() | st.sampled_from(["bot", "USER", ""]),
    "messages[0].content": st.sampled_from([None, [], 3, {}, True]),
    "messages[0].content[0].type": NOT_STR | st.sampled_from(["refusal", "video", ""]),
    "messages[0].content[0].text": NOT_STR | st.none(),
    "messages[0].name": NOT_STR | st.none(),
    "messages[1].tool_calls": NOT_NUMBER.filter(lambda v: not isinstance(v, list)),
    "messages[1].tool_calls[0].function.arguments": NOT_STR | st.none(),
    "messages[2].tool_call_id": NOT_STR | st.none(),
    "tools[0].function.name": NOT_STR | st.none() | st.sampled_from(["has space", "x" * 65, "", "é"]),
    "tools[0].type": NOT_STR | st.sampled_from(["retrieval", "FUNCTION"]),
    "response_format.type": NOT_STR | st.sampled_from(["xml", "json"]),
    "stream_options.include_usage": NOT_BOOL | st.none(),
}

MUTATION_BASE = {
    "model": "gpt-4o",
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}], "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
    ],
    "temperature": 1,
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "n": 1,
    "max_tokens": 10,
    "max_completion_tokens": 10,
    "seed": 1,
    "stop": ["\n"],
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"1": 1},
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "u",
    "tools": [{"type": "function", "function": {"name": "w"}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": {"type": "text"},
    "metadata": {"a": "b"},
    "reasoning_effort": "low",
    "service_tier": "auto",
    "verbosity": "low",
    "store": False,
    "modalities": ["text"],
}


def _set(body: dict, path: str, value: object) -> None:
    """Set ``value`` at an OpenAI-style param path, e.g. ``messages[1].tool_calls[0].function.arguments``."""
    steps: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        steps.append(name if name else int(index))
    target = body
    for step in steps[:-1]:
        target = target[step]
    target[steps[-1]] = value


def test_the_mutation_base_is_valid() -> None:
    validate_chat_request(copy.deepcopy(MUTATION_BASE))
    assert validator_for("CreateChatCompletionRequest").is_valid(MUTATION_BASE)


@SETTINGS
@given(st.sampled_from(sorted(MUTATIONS)).flatmap(lambda path: st.tuples(st.just(path), MUTATIONS[path])))
def test_one_broken_field_is_a_400_naming_it(mutation: tuple[str, object]) -> None:
    path, value = mutation
    body = copy.deepcopy(MUTATION_BASE)
    _set(body, path, value)
    # Straight to the validator: the values include integers and floats that JSON cannot carry.
    with pytest.raises(ApiError) as caught:
        validate_chat_request(body)
    error = caught.value
    assert (error.status, error.param) == (400, path), error.message
