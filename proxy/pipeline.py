"""The /v1 hot path, top to bottom. Each step raises a typed error from proxy/errors.py on refusal.

chat_completion: parse -> authenticate -> resolve model -> limit -> reserve -> relay -> settle.
"""

from proxy import errors
from proxy.http import Incoming, dumps, send_json
from proxy.state import gateway


async def list_models(req: Incoming) -> None:
    gw = gateway()
    key_hash, key = await gw.key_for(req.header(b"authorization"))
    key, quota = await gw.check(key_hash, key, count=False)  # answers with the headers, counts nothing
    req.headers_out += quota.headers()
    listing = {"object": "list", "data": gw.catalog.listing(key.allowed_models)}
    await send_json(req, 200, dumps(listing))


async def retrieve_model(req: Incoming, model_id: str) -> None:
    gw = gateway()
    key_hash, key = await gw.key_for(req.header(b"authorization"))
    key, quota = await gw.check(key_hash, key, count=False)
    req.headers_out += quota.headers()
    model = gw.catalog.resolve(model_id, key.allowed_models)
    await send_json(req, 200, dumps(model.openai()))


async def chat_completion(req: Incoming) -> None:
    raise errors.ApiError(501, "server_error", "not_implemented", "Chat completions are not available yet.")
