"""The management API's OpenAPI schema: valid OpenAPI 3, and every operation answers as it says (schemathesis
against the live gateway, authenticated with a management key)."""

import jsonschema
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.definitions import OPENAPI_30

from tests.api.conftest import error_of


def test_the_schema_is_valid_openapi_3_and_covers_every_endpoint(gateway):
    answer = requests.get(f"{gateway.url}/api/schema/", timeout=30)
    assert answer.status_code == 200
    schema = yaml.safe_load(answer.text)
    assert schema["openapi"].startswith("3.0")
    jsonschema.Draft4Validator(OPENAPI_30).validate(
        schema
    )  # the OpenAPI 3.0 meta-schema, vendored by schemathesis
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == {
        ("/api/v1/key", "get"), ("/api/v1/keys", "get"), ("/api/v1/keys", "post"),
        ("/api/v1/keys/{id}", "get"), ("/api/v1/keys/{id}", "patch"), ("/api/v1/keys/{id}", "delete"),
        ("/api/v1/credits", "get"), ("/api/v1/usage", "get"), ("/api/v1/generation", "get"),
    }  # fmt: skip
    assert set(schema["components"]["securitySchemes"]) == {"managementKey", "cookieAuth"}
    as_json = requests.get(f"{gateway.url}/api/schema/", params={"format": "json"}, timeout=30).json()
    assert as_json["paths"].keys() == schema["paths"].keys()


def test_the_docs_page_lists_every_operation_without_outside_assets(gateway):
    answer = requests.get(f"{gateway.url}/api/docs/", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    for fragment in ("/api/v1/keys/{id}", "/api/v1/generation", "/api/schema/", "PATCH", "DELETE"):
        assert fragment in page
    assert "<script" not in page and "cdn" not in page.lower() and "https://" not in page


def test_the_schema_is_public_but_the_api_is_not(gateway):
    assert requests.get(f"{gateway.url}/api/schema/", timeout=30).status_code == 200
    refused = requests.get(f"{gateway.url}/api/v1/keys", timeout=30)
    assert refused.status_code == 401 and error_of(refused)["code"] == "not_authenticated"


OPERATIONS = [
    ("GET", "/api/v1/key"), ("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"), ("GET", "/api/v1/keys/{id}"),
    ("PATCH", "/api/v1/keys/{id}"), ("DELETE", "/api/v1/keys/{id}"), ("GET", "/api/v1/credits"),
    ("GET", "/api/v1/usage"), ("GET", "/api/v1/generation"),
]  # fmt: skip


@pytest.fixture(scope="module")
def api_schema(gateway):
    return schemathesis.openapi.from_url(f"{gateway.url}/api/schema/?format=json")


@pytest.fixture
def fuzz_caller(make_user, make_key):
    """A user with a management key for schemathesis, and a spare key that takes any write aimed at the
    calling key itself (a DELETE drawn with the caller's own id would revoke it halfway through the run)."""
    user = make_user()
    key, raw = make_key(owner=user, management=True, name="schemathesis")
    spare, _ = make_key(owner=user, name="spare")
    return {"id": key.pk, "raw": raw, "spare": spare.pk}


# schemathesis's own pytest integration (``from_fixture(...).parametrize()``) fails on pytest 9 (it sets
# ``Node._nodeid``, which pytest 9 removed), so each operation is driven with its Hypothesis strategy instead.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_answers_as_its_schema_says(api_schema, gateway, fuzz_caller, method, path, mode):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        if case.path_parameters and case.path_parameters.get("id") == fuzz_caller["id"]:
            case.path_parameters["id"] = fuzz_caller["spare"]
        # Business rules a schema can't express (a limit above the account's, an unknown model, a date range
        # the wrong way round) are 400s for schema-valid input, so "positive data is accepted" is off.
        # Everything about the answers is checked: status codes, content types, bodies and headers.
        case.call_and_validate(
            base_url=gateway.url,
            headers={"Authorization": f"Bearer {fuzz_caller['raw']}"},
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )

    check()


def test_the_schema_documents_the_endpoint_of_usage_and_generations():
    from drf_spectacular.generators import SchemaGenerator

    from billing.models import Endpoint

    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]

    def resolve(spec: dict) -> dict:
        ref = spec.get("$ref") or (spec.get("allOf") or [{}])[0].get("$ref")
        return components[ref.rsplit("/", 1)[1]] if ref else spec

    usage = schema["paths"]["/api/v1/usage"]["get"]
    params = {p["name"]: resolve(p["schema"]) for p in usage["parameters"]}
    assert params["endpoint"]["enum"] == Endpoint.values
    assert "endpoint" in params["group_by"]["enum"]
    row = components["UsageRowOut"]
    assert resolve(row["properties"]["endpoint"])["enum"] == Endpoint.values
    assert "endpoint" not in row.get("required", [])  # only with group_by=endpoint
    assert resolve(components["UsageOut"]["properties"]["group_by"])["enum"] == params["group_by"]["enum"]
    generation = components["GenerationOut"]
    assert "endpoint" in generation["required"]
    assert resolve(generation["properties"]["endpoint"])["enum"] == Endpoint.values
