"""The floor of the stack: a relay with uvicorn and one aiohttp session and nothing else (no auth, limits,
validation, accounting or error handling). Not a product; ``python -m bench.floor`` measures it beside the
gateway, to tell what the gateway's own work costs from what the server and the client library cost.

The upstream's base URL comes from ``BARE_UPSTREAM``.
"""

import os

import aiohttp

UPSTREAM = os.environ.get("BARE_UPSTREAM", "http://127.0.0.1:9")
_session: aiohttp.ClientSession | None = None


async def app(scope: dict, receive, send) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
                await send({"type": "lifespan.startup.complete"})
            else:
                await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    method = _session.post if scope["method"] == "POST" else _session.get
    async with method(UPSTREAM + path, data=body or None, headers={"Content-Type": "application/json"}) as r:
        data = await r.read()
        status = r.status
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
