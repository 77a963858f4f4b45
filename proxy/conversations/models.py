"""A response made with ``store: true``: what it was given and what it answered."""

from django.db import models
from django.utils import timezone


class StoredResponse(models.Model):
    """Kept for ``GET /v1/responses/{id}``, its input items, and the next turn's ``previous_response_id``.

    Owned by the account whose key made it: every read is scoped to that account, so another account's id
    reads exactly like one that never existed."""

    id = models.CharField(primary_key=True, max_length=64)  # resp_...
    request_id = models.UUIDField(null=True, unique=True)  # the usage record of the request that made it
    account = models.ForeignKey("billing.Account", on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey("portal.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    previous_id = models.CharField(max_length=64, blank=True)  # the previous_response_id it continued
    # The provider that made it itself (a route that serves /responses), and so keeps it too: a follow-up on
    # that provider names it; anywhere else, the conversation is replayed. None when the gateway bridged it.
    provider_id = models.IntegerField(null=True, blank=True)
    input_items = models.JSONField(default=list)  # this turn's input, as items with ids
    response = models.JSONField()  # the Response object as the client got it
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self) -> str:
        return self.id
