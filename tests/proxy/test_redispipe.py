"""The hot path's pipelined Redis connection (portal/accounts/redispipe.py) against a real Redis, and against a server
that accepts the connection and then never answers: the caller gets RedisUnavailable, not a hang."""

import asyncio

import pytest
from django.conf import settings

from portal.accounts.redispipe import RedisPipe, RedisUnavailable


async def test_replies_are_paired_with_their_commands_under_concurrency():
    pipe = RedisPipe(settings.REDIS_URL, timeout=1.0)
    try:
        keys = [f"pipe-test:{n}" for n in range(200)]
        await asyncio.gather(*(pipe.call(b"SET", key, str(n)) for n, key in enumerate(keys)))
        values = await asyncio.gather(*(pipe.call(b"GET", key) for key in keys))
        assert values == [str(n).encode() for n in range(200)]
        await pipe.call(b"DEL", *keys)
    finally:
        await pipe.close()


async def test_a_server_that_never_answers_fails_the_call_within_about_the_timeout():
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = RedisPipe(f"redis://127.0.0.1:{port}/0", timeout=0.4)
    try:
        # Without the watchdog the call would hang until the outer 5 s and raise TimeoutError instead.
        with pytest.raises(RedisUnavailable, match="did not answer in time"):
            await asyncio.wait_for(pipe.call(b"PING"), timeout=5)
        assert accepted, "the command did reach the server"
        with pytest.raises(RedisUnavailable):  # the next call gets a new connection, and the same answer
            await asyncio.wait_for(pipe.call(b"PING"), timeout=5)
    finally:
        await pipe.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
