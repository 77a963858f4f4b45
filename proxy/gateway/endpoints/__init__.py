"""The endpoints the gateway serves, by the client's path. Each is a declaration (endpoints/base.py says what
one declares, and how to add one); the pipeline runs them all the same way."""

from proxy.gateway.endpoints.base import Endpoint
from proxy.gateway.endpoints.chat import CHAT
from proxy.gateway.endpoints.completions import COMPLETIONS
from proxy.gateway.endpoints.embeddings import EMBEDDINGS
from proxy.gateway.endpoints.messages import MESSAGES
from proxy.gateway.endpoints.responses import RESPONSES

ENDPOINTS: dict[str, Endpoint] = {e.path: e for e in (CHAT, EMBEDDINGS, COMPLETIONS, RESPONSES, MESSAGES)}
