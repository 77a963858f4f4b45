"""Server-side time of the dashboard pages and the management API for one user with many usage records.

Runs in a ``manage.py shell`` with the scale database's environment: Django's test client (signed in with
``force_login``) renders each page in-process, so the number is the server's work (middleware, queries,
template) without a network or a browser. The API is called with a management key minted for the user.
Median of several renders after one warm-up; also the SQL query count and the slowest query.
"""

import json

from bench.setup import manage

SCRIPT = """
import json, statistics, time
from datetime import timedelta
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from portal.accounts.models import ApiKey, User
from portal.accounts.services import key_create
from proxy.catalog.models import Model

user = User.objects.get(email=EMAIL)
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
_, mgmt = key_create(owner=user, name="scale-pages", management=True)
api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {mgmt}")
key = ApiKey.objects.filter(owner=user, kind="inference").order_by("id").first()
paid = Model.objects.exclude(input_usd_per_mtok=0).order_by("id").first()
today = timezone.now().date()
pages = [
    (client, "/dashboard"),
    (client, "/usage"),
    (client, "/usage?page=40"),
    (client, "/usage?page=999999"),  # past the end: Django's paginator shows the last page, the oldest rows
    (client, f"/usage?key={key.pk}&model={paid.name}"),
    (client, f"/usage?since={today - timedelta(days=89)}&until={today}"),
    (client, "/keys"),
    (api, "/api/v1/usage"),
    (api, "/api/v1/key"),
]

def render(c, path):
    response = c.get(path, secure=True)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, len(body)

out = []
for c, path in pages:
    status, size = render(c, path)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        render(c, path)
        times.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as queries:
        render(c, path)
    slowest_q = max(queries.captured_queries, key=lambda q: float(q["time"]), default={"time": 0, "sql": ""})
    slowest = float(slowest_q["time"]) * 1000
    out.append({"path": path, "status": status, "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1), "queries": len(queries), "slowest_query_ms": round(slowest, 1),
                "kib": round(size / 1024, 1), "slowest_sql": slowest_q["sql"][:600]})
print(json.dumps(out))
"""


def measure(env: dict[str, str], email: str, runs: int = 5) -> list[dict]:
    out = manage(env, "shell", "-c", f"EMAIL = {email!r}\nRUNS = {runs}\n{SCRIPT}", timeout=1200)
    return json.loads(out.strip().splitlines()[-1])
