"""OpenAI's published OpenAPI description, as JSON Schema validators for tests.

The file declares OpenAPI 3.1, but about a hundred schemas still use 3.0's ``nullable: true``, which JSON
Schema ignores; ``validator_for`` rewrites each of them to ``anyOf [schema, {type: null}]`` so that ``null``
validates where OpenAI means it to. The file is about 3 MB of YAML, so it is parsed once per process and
cached.

Set ``OPENAI_OPENAPI_SPEC`` to point at another copy; by default it is the copy in tests/data
(OpenAI's openai-openapi repository, version 2.3.0, MIT licence).
"""

import functools
import os
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_REPO = Path(__file__).resolve().parent.parent
_DEFAULT_PATH = _REPO / "tests" / "data" / "openai-openapi.yaml"
_URI = "urn:openai-openapi"


def spec_path() -> Path:
    return Path(os.environ.get("OPENAI_OPENAPI_SPEC", _DEFAULT_PATH))


@functools.cache
def load_spec() -> dict:
    """The parsed spec, untouched. Callers must not mutate it: it is shared."""
    path = spec_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"OpenAI's OpenAPI spec is not at {path}; set OPENAI_OPENAPI_SPEC to the openai-openapi.yaml file"
        )
    # The C loader parses the file in about 2 s; the pure-Python one takes many times longer.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as handle:
        return yaml.load(handle, Loader=loader)


def rewrite_nullable(node: object) -> object:
    """A copy of ``node`` with every ``nullable: true`` schema turned into ``anyOf [schema, null]``."""
    if isinstance(node, list):
        return [rewrite_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: rewrite_nullable(value) for key, value in node.items() if key != "nullable"}
    # `is True` rather than truthiness: a `properties` map may have a property *named* nullable.
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _registry() -> Registry:
    # Every $ref in the spec points into #/components/schemas, so only that part needs the rewrite.
    document = {"components": {"schemas": rewrite_nullable(load_spec()["components"]["schemas"])}}
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


@functools.cache
def validator_for(schema_name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>``, with ``$ref``s resolved inside the spec."""
    if schema_name not in load_spec()["components"]["schemas"]:
        raise KeyError(f"no schema named {schema_name!r} in the spec")
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{schema_name}"}, registry=_registry())
