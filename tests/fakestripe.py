"""A fake of Stripe's API as far as Checkout goes, served over HTTP so the real ``stripe`` library talks to it.

The ``fake_stripe`` fixture (tests/conftest.py) serves it on a free port and points ``STRIPE_API_BASE`` at it.
"""

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs

SECRET_KEY = "sk_test_dummy"
WEBHOOK_SECRET = "whsec_test_" + "k" * 32
PAY_URL = "https://checkout.stripe.com/c/pay/"  # a session's checkout page is this plus its id


class Call(NamedTuple):
    path: str
    authorization: str
    form: dict[str, list[str]]


class FakeStripe(BaseHTTPRequestHandler):
    """Records each call, answers like Stripe with a new Checkout Session, or refuses when ``refuse`` is set."""

    calls: list[Call]
    refuse = False

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        type(self).calls.append(Call(self.path, self.headers["Authorization"], form))
        if type(self).refuse:
            self.answer(400, {"error": {"type": "invalid_request_error", "message": "Not a valid URL"}})
        else:
            sid = f"cs_test_{uuid.uuid4().hex}"
            self.answer(200, {"id": sid, "object": "checkout.session", "url": PAY_URL + sid})

    def answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serving() -> Iterator[tuple[type[FakeStripe], str]]:
    """A fake on a free port: (its handler class, whose ``calls`` and ``refuse`` are this server's own; its URL)."""
    # A subclass per server, so one test's calls and refusal never leak into the next.
    handler = type("Handler", (FakeStripe,), {"calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
