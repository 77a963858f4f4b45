"""The management API's views: parse, call a selector or a service, shape the answer. Nothing else."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import api_selectors as selectors
from billing.models import UsageRecord
from portal.accounts.models import ApiKey
from portal.accounts.services import KeyRevoked, key_create, key_revoke_audited, key_update
from portal.site.api.auth import KeyCaller, calling_key
from portal.site.api.errors import Conflict
from portal.site.api.serializers import (
    CreditsOut,
    ErrorOut,
    GenerationOut,
    GenerationQueryIn,
    KeyCreatedOut,
    KeyCreateIn,
    KeyOut,
    KeySummaryOut,
    KeyUpdateIn,
    UsageOut,
    UsageQueryIn,
)

MAX_USAGE_DAYS = 366
_DESCRIPTIONS = {
    400: "The input is invalid; `error.fields` says where",
    401: "No credentials, or an invalid, revoked, disabled or expired key",
    403: "Not allowed: an inference key, a disabled account, or an action this caller may not take",
    404: "No such object for this caller",
    409: "The object's state forbids the change",
    429: "Too many management API calls; see Retry-After",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {
        s: OpenApiResponse(ErrorOut, description=_DESCRIPTIONS[s]) for s in sorted({401, 403, 429, *statuses})
    }


class KeySelfApi(APIView):
    permission_classes = [KeyCaller]

    @extend_schema(
        operation_id="key_current", tags=["keys"], summary="The calling key: limits, what remains, spend, usage",
        description="Answers for the key in the Authorization header, inference or management. Also served by "
        "the gateway at GET /v1/key.",
        responses={200: KeySummaryOut, **errors()},
        # Security requirement objects, as drf-spectacular puts them in the schema; its hint says strings.
        auth=[{"managementKey": []}],  # type: ignore[list-item]
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(selectors.key_summary(key_id=request.auth.pk))


class KeyListApi(APIView):
    @extend_schema(
        operation_id="keys_list", tags=["keys"], summary="Your API keys, newest first (revoked ones included)",
        responses={200: KeyOut(many=True), **errors()},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(KeyOut(selectors.keys_of(user=request.user), many=True).data)

    @extend_schema(
        operation_id="keys_create", tags=["keys"], summary="Create a key; the raw key is in this response only",
        request=KeyCreateIn, responses={201: KeyCreatedOut, **errors(400)},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        data = KeyCreateIn(data=request.data, context={"user": request.user})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        management = fields.pop("kind") == ApiKey.Kind.MANAGEMENT
        if management and calling_key(request) is not None:
            # A leaked management key must not be able to mint more of itself.
            raise exceptions.PermissionDenied(
                "Management keys are created from the dashboard.", code="session_required"
            )
        key, raw = key_create(owner=request.user, management=management, **fields)
        return Response({**KeyOut(key).data, "key": raw}, status=201)


class KeyDetailApi(APIView):
    def _key(self, request: Request, id: int) -> ApiKey:
        try:
            return selectors.keys_of(user=request.user).get(pk=id)
        except ApiKey.DoesNotExist:
            raise exceptions.NotFound("No such key.") from None

    @extend_schema(operation_id="keys_get", tags=["keys"], responses={200: KeyOut, **errors(404)})
    def get(self, request: Request, id: int) -> Response:
        return Response(KeyOut(self._key(request, id)).data)

    @extend_schema(
        operation_id="keys_update", tags=["keys"], summary="Rename, set limits, disable or enable a key",
        request=KeyUpdateIn, responses={200: KeyOut, **errors(400, 404, 409)},
    )  # fmt: skip
    def patch(self, request: Request, id: int) -> Response:
        key = self._key(request, id)
        data = KeyUpdateIn(data=request.data, context={"user": request.user}, partial=True)
        data.is_valid(raise_exception=True)
        try:
            key = key_update(key=key, actor=request.user, **data.validated_data)
        except KeyRevoked as exc:
            raise Conflict(str(exc), code="key_revoked") from None
        return Response(KeyOut(key).data)

    @extend_schema(
        operation_id="keys_revoke", tags=["keys"], summary="Revoke a key for good (it stays listed, revoked)",
        responses={200: KeyOut, **errors(404)},
    )  # fmt: skip
    def delete(self, request: Request, id: int) -> Response:
        key = key_revoke_audited(key=self._key(request, id), actor=request.user)
        return Response(KeyOut(key).data)


class CreditsApi(APIView):
    @extend_schema(operation_id="credits_get", tags=["credits"], responses={200: CreditsOut, **errors()})
    def get(self, request: Request) -> Response:
        credits = selectors.credits_get(user=request.user)
        return Response(CreditsOut({**vars(credits), "currency": "USD"}).data)


class UsageApi(APIView):
    @extend_schema(
        operation_id="usage_get", tags=["usage"], summary="Usage totals per day, model, key or endpoint",
        description="From the daily rollups (UTC days), rebuilt every minute. At most 366 days per call.",
        parameters=[UsageQueryIn], responses={200: UsageOut, **errors(400, 404)},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        query = UsageQueryIn(data=request.query_params.dict())  # "?to=" is an error, not a default
        query.is_valid(raise_exception=True)
        q = query.validated_data
        until = q.get("to") or timezone.now().date()
        since = q.get("from") or until - timedelta(days=29)
        if since > until:
            raise exceptions.ValidationError({"from": ["must not be after 'to'"]})
        if (until - since).days >= MAX_USAGE_DAYS:
            raise exceptions.ValidationError({"from": [f"at most {MAX_USAGE_DAYS} days per call"]})
        if "key" in q and not selectors.keys_of(user=request.user).filter(pk=q["key"]).exists():
            raise exceptions.NotFound("No such key.")
        rows, total = selectors.usage_totals(
            user=request.user, since=since, until=until, group_by=q["group_by"], model=q.get("model"),
            key_id=q.get("key"), endpoint=q.get("endpoint"),
        )  # fmt: skip
        answer = {"from": since, "to": until, "group_by": q["group_by"], "data": rows, "total": total}
        return Response(UsageOut(answer).data)


class GenerationApi(APIView):
    @extend_schema(
        operation_id="generation_get", tags=["usage"], summary="One request: tokens, cost, latency, outcome",
        description="Records are written a few milliseconds after a response ends.",
        parameters=[GenerationQueryIn], responses={200: GenerationOut, **errors(400, 404)},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        query = GenerationQueryIn(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        try:
            record = selectors.generation_get(user=request.user, request_id=query.validated_data["id"])
        except UsageRecord.DoesNotExist:
            raise exceptions.NotFound("No such request.") from None
        return Response(GenerationOut(record).data)
