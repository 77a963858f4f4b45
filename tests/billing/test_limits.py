"""Rate limits, exact under concurrency, across processes, and through the openai SDK."""

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import aiohttp
import openai
import pytest
from django.conf import settings

from portal.accounts.limits import OK, RPD_EXCEEDED, RedisLimiter


async def burst(urls: list[str], raw: str, model: str, n: int) -> list[tuple[int, dict]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {raw}"}
    async with aiohttp.ClientSession() as session:

        async def one(i: int):
            async with session.post(
                f"{urls[i % len(urls)]}/chat/completions", json=body, headers=headers
            ) as r:
                await r.read()
                return r.status, r.headers.copy()

        return await asyncio.gather(*(one(i) for i in range(n)))


async def test_a_burst_on_a_20_rpm_key_admits_exactly_20(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=20, rpd_limit=1000)
    answers = await burst([gateway.base_url], raw, catalog["echo"], 100)
    assert Counter(status for status, _ in answers) == {200: 20, 429: 80}
    refused = [h for status, h in answers if status == 429]
    assert all(1 <= int(h["Retry-After"]) <= 60 for h in refused)
    assert all(h["X-RateLimit-Remaining-RPM"] == "0" for h in refused)


async def test_limits_are_global_across_two_gateway_processes(gateway, second_gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=20, rpd_limit=1000)
    answers = await burst([gateway.base_url, second_gateway.base_url], raw, catalog["echo"], 100)
    assert Counter(status for status, _ in answers) == {200: 20, 429: 80}


def test_the_day_limit_says_do_not_retry_and_the_sdk_raises_rate_limit_error(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=100, rpd_limit=5)
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    for remaining in (4, 3, 2, 1, 0):
        ok = api.chat.completions.with_raw_response.create(
            model=catalog["echo"], messages=[{"role": "user", "content": "hi"}]
        )
        assert ok.headers["x-ratelimit-remaining-rpd"] == str(remaining)
        assert ok.headers["x-ratelimit-limit-rpd"] == "5"
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(model=catalog["echo"], messages=[{"role": "user", "content": "hi"}])
    headers = info.value.response.headers
    assert headers["x-should-retry"] == "false"
    now = datetime.now(UTC)
    to_midnight = (
        datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now
    ).total_seconds()
    assert abs(int(headers["retry-after"]) - to_midnight) <= 5
    assert "per day" in info.value.body["message"]
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_models_listing_carries_headers_but_does_not_count(gateway, make_key):
    _, raw = make_key(rpm_limit=3, rpd_limit=3)
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    for _ in range(5):
        headers = api.models.with_raw_response.list().headers
    assert headers["x-ratelimit-remaining-rpm"] == "3"
    assert headers["x-ratelimit-remaining-rpd"] == "3"


def test_refused_requests_do_not_count(gateway, make_key):
    _, raw = make_key(rpm_limit=2, rpd_limit=2)
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    for _ in range(4):
        with pytest.raises(openai.NotFoundError):
            api.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError):
            api.chat.completions.create(model="x", messages=[])
    assert api.models.with_raw_response.list().headers["x-ratelimit-remaining-rpd"] == "2"


async def test_the_next_utc_day_allows_requests_again_and_the_minute_window_slides():
    """The limiter script itself, against real Redis, with the clock under the test's control."""
    limiter = RedisLimiter(settings.REDIS_URL)
    key_id, user_id = 10_000_000 + int(time.time() * 1000) % 1_000_000, 1
    day1 = int(datetime(2030, 1, 1, 23, 57, 0, tzinfo=UTC).timestamp() * 1000)
    kwargs = {"key_id": key_id, "user_id": user_id, "versions": (0, 0), "rpm": 2, "rpd": 3, "count": True}
    try:
        assert (await limiter.check(**kwargs, token="a", at=day1)).verdict == OK
        assert (await limiter.check(**kwargs, token="b", at=day1 + 1000)).verdict == OK
        full = await limiter.check(**kwargs, token="c", at=day1 + 2000)
        assert full.verdict == 1 and full.retry_after == 58  # the first slot frees 60 s after it was taken
        assert (await limiter.check(**kwargs, token="d", at=day1 + 60_500)).verdict == OK  # slid past "a"
        out = await limiter.check(**kwargs, token="e", at=day1 + 61_500)
        assert out.verdict == RPD_EXCEEDED and out.retry_after == 119  # 118.5 s until 00:00 UTC, rounded up
        day2 = day1 + 240_000  # 00:01 the next day
        assert (await limiter.check(**kwargs, token="f", at=day2)).verdict == OK
    finally:
        await limiter.close()
