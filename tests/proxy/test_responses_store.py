"""The stored responses' write path (proxy/conversations/stored.py): kept in Redis before the answer goes out,
written to the database in batches soon after, swept from Redis when their process died.

Most tests run a gateway of their own that never flushes while it runs (``HELD``), so what it keeps is only in
Redis until it stops: what they find, they found before the database write.
"""

import signal
import time

import openai
import pytest
import redis
import requests
from django.conf import settings

from billing.services import account_for
from proxy.conversations.models import StoredResponse
from proxy.conversations.stored import COLUMNS, PENDING, WARM_SECONDS, copy_name, member
from tests.conftest import database_url
from tests.live import start_gateway
from tests.proxy.test_chat import HIGH_LIMITS, client
from tests.proxy.test_responses import last_text, wait_stored

HELD = {"RESPONSES_FLUSH_SECONDS": "3600", "RESPONSES_SWEEP_SECONDS": "3600"}


@pytest.fixture
def start(live_database, catalog, artifacts):
    """Gateways of the test's own, on the session's database and Redis (``redis=False``: none); those still
    running at its end are stopped gracefully."""
    started = []

    def start(*, redis: bool = True, **overrides: str):
        url = settings.REDIS_URL if redis else ""
        gw = start_gateway(
            database_url(), url, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123", **overrides
        )
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def shared_redis():
    return redis.Redis.from_url(settings.REDIS_URL)


def stop_gracefully(gw) -> None:
    """SIGTERM; uvicorn re-raises it once the application's shutdown (the final flushes) completed."""
    assert gw.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    log = gw.log()
    assert "Application shutdown complete" in log and "not in the database" not in log, log[-3000:]


def in_database(*ids: str) -> set[str]:
    return set(StoredResponse.objects.filter(pk__in=ids).values_list("pk", flat=True))


def pending(shared_redis, key_row, *ids: str) -> list:
    account_id = account_for(user=key_row.owner).pk
    return [shared_redis.zscore(PENDING, member(account_id, i)) for i in ids]


def test_a_read_and_a_follow_up_sent_the_instant_the_answer_ended_find_it_in_any_process(
    start, gateway, catalog, make_key, upstream
):
    held = start(**HELD)
    _, raw = make_key(**HIGH_LIMITS)
    here, there = client(held, raw), client(gateway, raw)
    with here.responses.stream(model=catalog["echo"], input="held first turn") as stream:
        first = stream.get_final_response()
    plain = here.responses.create(model=catalog["echo"], input="held plain turn")
    assert in_database(first.id, plain.id) == set()  # only in Redis so far
    for api in (here, there):
        assert api.responses.retrieve(first.id).output_text == "You said: held first turn"
        [item] = api.responses.input_items.list(plain.id).data
        assert item.content[0].text == "held plain turn"
    second = there.responses.create(
        model=catalog["echo"], input="held second turn", previous_response_id=first.id
    )
    assert second.output_text == "You said: held second turn"
    [sent] = [r for r in upstream.find(model="echo") if last_text(r) == "held second turn"]
    assert [m["role"] for m in sent.json["messages"]] == ["user", "assistant", "user"]
    assert sent.json["messages"][1]["content"] == "You said: held first turn"
    assert in_database(first.id, plain.id) == set()


def test_a_kept_response_reaches_the_database_just_after_its_answer(gateway, catalog, make_key, shared_redis):
    key, raw = make_key(**HIGH_LIMITS)
    made = client(gateway, raw).responses.with_raw_response.create(
        model=catalog["echo"], input="write me down"
    )
    response = made.parse()
    row = wait_stored(response.id, timeout=2.0)
    assert (row.account_id, row.key_id, str(row.request_id)) == (
        account_for(user=key.owner).pk, key.pk, made.headers["x-request-id"],
    )  # fmt: skip
    assert row.response["id"] == response.id and row.response["output"][0]["content"][0]["text"] == (
        "You said: write me down"
    )
    assert row.input_items[0]["content"][0]["text"] == "write me down"
    # Written, so no longer waiting for a sweep (dropped from the pending set just after the commit), and its
    # copy is kept only a few minutes more instead of the hour that covers a crash.
    deadline = time.monotonic() + 2.0
    while pending(shared_redis, key, response.id) != [None] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pending(shared_redis, key, response.id) == [None]
    name = member(row.account_id, response.id)
    assert 0 < shared_redis.ttl(copy_name(name)) <= WARM_SECONDS


def test_a_response_deleted_before_its_write_is_never_written(start, gateway, catalog, make_key):
    held = start(**HELD)
    _, raw = make_key(**HIGH_LIMITS)
    here, there = client(held, raw), client(gateway, raw)
    doomed = here.responses.create(model=catalog["echo"], input="delete me soon")
    kept = here.responses.create(model=catalog["echo"], input="keep me, beside it")
    assert there.responses.delete(doomed.id) is None  # another process: the tombstone is in Redis
    for api in (here, there):
        with pytest.raises(openai.NotFoundError):
            api.responses.retrieve(doomed.id)
        with pytest.raises(openai.NotFoundError):
            api.responses.delete(doomed.id)
    stop_gracefully(held)  # its last flush writes both, then finds the tombstone
    assert in_database(doomed.id, kept.id) == {kept.id}
    with pytest.raises(openai.NotFoundError):
        there.responses.retrieve(doomed.id)
    with pytest.raises(openai.BadRequestError):
        there.responses.create(model=catalog["echo"], input="resurrect?", previous_response_id=doomed.id)


def test_another_accounts_response_reads_as_missing_while_it_waits_for_its_write(start, catalog, make_key):
    held = start(**HELD)
    _, raw = make_key(**HIGH_LIMITS)
    _, other_raw = make_key(**HIGH_LIMITS)
    mine, other = client(held, raw), client(held, other_raw)
    made = mine.responses.create(model=catalog["echo"], input="mine, in Redis")
    nobodys = "resp_" + "0" * 32
    answers = {}
    for response_id in (made.id, nobodys):
        with pytest.raises(openai.NotFoundError) as refused:
            other.responses.retrieve(response_id)
        answers[response_id] = refused.value.body["message"].replace(response_id, "X")
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(response_id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(response_id)
    assert answers[made.id] == answers[nobodys]
    with pytest.raises(openai.BadRequestError) as continued:
        other.responses.create(model=catalog["echo"], input="steal it", previous_response_id=made.id)
    assert continued.value.body["param"] == "previous_response_id"
    assert mine.responses.retrieve(made.id).id == made.id  # the other's delete did not touch it
    stop_gracefully(held)
    assert in_database(made.id) == {made.id}


def test_a_graceful_stop_writes_every_response_it_holds(start, catalog, make_key, shared_redis):
    held = start(**HELD)
    key, raw = make_key(**HIGH_LIMITS)
    api = client(held, raw)
    ids = [api.responses.create(model=catalog["echo"], input=f"held {n}").id for n in range(3)]
    with api.responses.stream(model=catalog["echo"], input="held, streamed") as stream:
        ids.append(stream.get_final_response().id)
    assert in_database(*ids) == set()
    assert all(score is not None for score in pending(shared_redis, key, *ids))
    stop_gracefully(held)
    assert in_database(*ids) == set(ids)
    assert pending(shared_redis, key, *ids) == [None] * len(ids)


def test_the_responses_of_a_process_that_died_are_written_by_another_ones_sweep(
    start, gateway, catalog, make_key, shared_redis
):
    doomed = start(**HELD)
    key, raw = make_key(**HIGH_LIMITS)
    lost, deleted = (client(doomed, raw).responses.create(model=catalog["echo"], input=t) for t in ("a", "b"))
    doomed.stop(signal.SIGKILL)  # no final flush: both are only in Redis, pending
    assert in_database(lost.id, deleted.id) == set()
    there = client(gateway, raw)
    assert there.responses.retrieve(lost.id).output_text == "You said: a"  # its copy still answers
    there.responses.delete(deleted.id)
    start(RESPONSES_SWEEP_SECONDS="0.5")  # sweeps ids pending for more than half a second, twice a second
    assert wait_stored(lost.id, timeout=10.0).response["id"] == lost.id
    assert in_database(deleted.id) == set()
    assert pending(shared_redis, key, lost.id, deleted.id) == [None, None]


def test_when_redis_cannot_take_the_copy_the_response_is_written_before_its_answer(
    start, catalog, make_key, shared_redis
):
    held = start(**HELD)
    _, raw = make_key(**HIGH_LIMITS)
    backup = shared_redis.dump(PENDING)
    shared_redis.set(PENDING, "not a sorted set")  # the keeping script's ZADD fails with WRONGTYPE
    try:
        made = client(held, raw).responses.create(model=catalog["echo"], input="secret words of the prompt")
        assert in_database(made.id) == {made.id}  # written at once, on the database
    finally:
        shared_redis.delete(PENDING)
        if backup is not None:
            shared_redis.restore(PENDING, 0, backup, replace=True)
    assert client(held, raw).responses.retrieve(made.id).id == made.id
    log = held.log()
    assert f"response {made.id} has no Redis copy" in log and "secret words" not in log


def test_without_redis_the_response_is_written_before_its_answer(start, catalog, make_key):
    single = start(redis=False, **HELD)
    _, raw = make_key(**HIGH_LIMITS)
    answer = requests.post(
        f"{single.base_url}/responses", json={"model": catalog["echo"], "input": "no redis here"},
        headers={"Authorization": f"Bearer {raw}"}, timeout=30,
    )  # fmt: skip
    made = answer.json()
    assert answer.status_code == 200 and in_database(made["id"]) == {made["id"]}
    assert client(single, raw).responses.retrieve(made["id"]).output_text == "You said: no redis here"


def test_a_redis_copy_holds_every_column_of_its_row():
    """The database reads a batch of copies as they are: a column the copy lacked would be written empty."""
    assert sorted(COLUMNS) == sorted(f.column for f in StoredResponse._meta.concrete_fields)
