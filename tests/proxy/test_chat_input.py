"""Bad input to POST /v1/chat/completions over real HTTP: every refusal is a 4xx in OpenAI's error shape, none
is a 5xx, and nothing refused ever reaches the upstream.

Raw bytes go out with ``urllib`` (the SDK would refuse to send most of them). One key with high limits serves
the whole module; refused requests fail before the rate limiter, so they do not count anyway.
"""

import json
import socket
import urllib.error
import urllib.request

import openai
import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import unique
from tests.proxy.bad_bodies import BAD_BODIES, GOOD_BODIES
from tests.proxy.test_chat import assert_openai_error, client, user

LIMIT = settings.MAX_BODY_BYTES


@pytest.fixture(scope="module")
def raw_key(live_database, django_db_blocker) -> str:
    from billing.services import customer_create
    from portal.accounts.services import key_create

    with django_db_blocker.unblock():
        owner = customer_create(email=f"{unique('input')}@example.com")
        _, raw = key_create(owner=owner, name="input", rpm_limit=1000, rpd_limit=100_000)
    return raw


def post(gateway, body: bytes, *, key: str | None, headers: dict | None = None) -> tuple[int, dict, object]:
    """POST raw bytes; returns (status, lower-cased headers, parsed JSON body or the raw text)."""
    request = urllib.request.Request(f"{gateway.base_url}/chat/completions", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, head, raw = err.code, err.headers, err.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, {k.lower(): v for k, v in head.items()}, parsed


def assert_refused(status: int, body: object, expected_status: int = 400) -> dict:
    assert status < 500, f"a {status} for bad input: {body}"
    assert status == expected_status, body
    return assert_openai_error(body)


# ---------------------------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize(
    ("raw", "param"), [(b, p) for _, b, p in BAD_BODIES], ids=[d for d, _, _ in BAD_BODIES]
)
def test_every_bad_body_is_a_400_naming_the_param(gateway, upstream, raw_key, raw, param):
    assert len(raw) <= LIMIT
    before = upstream.count()
    status, headers, body = post(gateway, raw, key=raw_key)
    error = assert_refused(status, body)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "x-request-id" in headers
    assert upstream.count() == before, "a refused request reached the upstream"


def test_bad_bodies_do_not_count_against_the_rate_limit(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=3, rpd_limit=3)
    for _, body, _ in BAD_BODIES[:10]:
        status, _, _ = post(gateway, body, key=raw)
        assert status == 400
    api = client(gateway, raw)
    response = api.chat.completions.with_raw_response.create(
        model=catalog["echo"], messages=user("still here")
    )
    assert response.headers["x-ratelimit-remaining-rpm"] == "2"
    assert response.headers["x-ratelimit-remaining-rpd"] == "2"


@pytest.mark.parametrize("description", [d for d, _ in GOOD_BODIES[:6]])
def test_good_bodies_are_relayed(gateway, catalog, upstream, raw_key, description):
    body = dict(GOOD_BODIES)[description] | {"model": catalog["echo"]}
    status, _, answer = post(gateway, json.dumps(body).encode(), key=raw_key)
    assert status == 200, answer
    if not body.get("stream"):
        assert answer["object"] == "chat.completion"


def test_invalid_json_is_a_400(gateway, upstream, raw_key):
    before = upstream.count()
    status, _, body = post(gateway, b'{"model": "x", "messages": [}', key=raw_key)
    error = assert_refused(status, body)
    assert (error["type"], error["param"]) == ("invalid_request_error", None)
    assert upstream.count() == before


def test_a_body_over_the_limit_is_a_413(gateway, catalog, upstream, raw_key):
    """Through the SDK."""
    before = upstream.count()
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, raw_key).chat.completions.create(
            model=catalog["echo"], messages=user("x" * (LIMIT + 1))
        )
    assert info.value.status_code == 413
    error = assert_refused(413, info.value.response.json(), 413)
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
    assert upstream.count() == before


def test_a_client_that_writes_its_whole_body_first_still_reads_the_413(gateway, catalog, upstream, raw_key):
    """The refused body is drained, so a simple client gets the answer instead of a reset connection."""
    before = upstream.count()
    body = json.dumps({"model": catalog["echo"], "messages": user("x" * (LIMIT + 10))}).encode()
    status, _, answer = post(gateway, body, key=raw_key)
    error = assert_refused(status, answer, 413)
    assert error["code"] == "request_too_large"
    assert upstream.count() == before


def test_a_chunked_body_over_the_limit_is_a_413(gateway, catalog, upstream, raw_key):
    """No Content-Length to check up front: the limit holds while the body is read."""
    raw = json.dumps({"model": catalog["echo"], "messages": user("y" * (LIMIT + 10))}).encode()
    before = upstream.count()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Authorization: Bearer {raw_key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for start in range(0, len(raw), 256 * 1024):
                piece = raw[start : start + 256 * 1024]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway may answer and close before the whole body is sent
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"413", answer[:300]
    payload = rest.partition(b"\r\n\r\n")[2]
    error = assert_openai_error(json.loads(payload))
    assert error["code"] == "request_too_large"
    assert upstream.count() == before


# ---------------------------------------------------------------------------------- keys and models


def test_a_missing_authorization_header_is_a_401(gateway, catalog, upstream):
    before = upstream.count()
    body = json.dumps({"model": catalog["echo"], "messages": user("who am I")}).encode()
    status, _, answer = post(gateway, body, key=None)
    error = assert_refused(status, answer, 401)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert upstream.count() == before


def test_an_unknown_model_is_a_404(gateway, upstream, raw_key):
    before = upstream.count()
    with pytest.raises(openai.NotFoundError) as info:
        client(gateway, raw_key).chat.completions.create(model="no-such-model", messages=user("hello"))
    assert info.value.body == {
        "message": "The model 'no-such-model' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert upstream.count() == before


def test_a_model_outside_the_keys_allow_list_is_a_403(gateway, catalog, upstream, make_key):
    _, raw = make_key(allowed_models=[catalog["echo"]])
    before = upstream.count()
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(gateway, raw).chat.completions.create(model=catalog["no-usage"], messages=user("hello"))
    assert info.value.status_code == 403
    assert (info.value.body["type"], info.value.body["code"]) == ("permission_error", "model_not_allowed")
    assert upstream.count() == before
    allowed = client(gateway, raw).chat.completions.create(model=catalog["echo"], messages=user("hello"))
    assert allowed.choices[0].message.content == "You said: hello"


# ------------------------------------------------------------------------------------------ property

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_NOT_NULL = st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_CONTAINERS = st.lists(JSON_VALUES, max_size=3) | st.dictionaries(
    st.text(max_size=8), JSON_VALUES, max_size=3
)
_NO_NUMBER = st.booleans() | st.text(max_size=20) | _CONTAINERS
_NO_INT = (
    st.booleans() | st.text(max_size=20) | _CONTAINERS | st.floats(allow_nan=False).filter(lambda f: f % 1)
)
_NO_STRING = _NOT_NULL.filter(lambda v: not isinstance(v, str)) | _CONTAINERS
_NO_BOOL = st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | _CONTAINERS
_NO_LIST = st.none() | _NOT_NULL | st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)
_NO_OBJECT = _NOT_NULL | st.lists(JSON_VALUES, max_size=3)

# A field of a valid body, and values that are never valid there.
WRONG_VALUES: dict[str, st.SearchStrategy] = {
    "model": st.none() | _NO_STRING,
    "messages": _NO_LIST | st.just([]),
    "temperature": _NO_NUMBER,
    "top_p": _NO_NUMBER,
    "presence_penalty": _NO_NUMBER,
    "frequency_penalty": _NO_NUMBER,
    "n": _NO_INT,
    "max_tokens": _NO_INT,
    "max_completion_tokens": _NO_INT,
    "seed": _NO_INT,
    "stream": _NO_BOOL,
    "logprobs": _NO_BOOL,
    "store": _NO_BOOL,
    "tools": _NO_LIST.filter(lambda v: v is not None),
    "response_format": _NO_OBJECT,
    "stream_options": _NO_OBJECT,
    "user": _NO_STRING,
    "message": _NO_OBJECT | st.none(),
    "role": st.none() | _NO_STRING | st.text(max_size=12).filter(lambda s: s not in _ROLES),
    "content": _NO_STRING.filter(lambda v: not isinstance(v, list)) | st.none() | st.just([]),
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@st.composite
def malformed_bodies(draw, model: str) -> bytes:
    kind = draw(st.sampled_from(["field", "field", "field", "any-json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "any-json":
        value = draw(
            JSON_VALUES.filter(lambda v: not isinstance(v, dict)) | st.dictionaries(st.text(), JSON_VALUES)
        )
        return json.dumps(value).encode()
    message = {"role": "user", "content": "Hi"}
    body: dict = {"model": model, "messages": [message]}
    field = draw(st.sampled_from(sorted(WRONG_VALUES)))
    value = draw(WRONG_VALUES[field])
    if field == "message":
        body["messages"] = [value]
    elif field in ("role", "content"):
        message[field] = value
    else:
        body[field] = value
    return json.dumps(body).encode()


def test_generated_malformed_bodies_are_always_4xx_in_openai_shape(gateway, catalog, upstream, raw_key):
    before = upstream.count()

    @hypothesis_settings(
        max_examples=60, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )  # fmt: skip
    @given(raw=malformed_bodies(catalog["echo"]))
    def check(raw: bytes) -> None:
        status, _, body = post(gateway, raw, key=raw_key)
        assert 400 <= status < 500, f"{status} for {raw[:200]!r}: {body}"
        assert_openai_error(body)

    check()
    assert upstream.count() == before, "a malformed body reached the upstream"
