from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from proxy.catalog.importer import CatalogError, catalog_import
from proxy.catalog.models import Model, Provider, Route

GOOD = """
[[providers]]
name = "acme"
base_url = "https://api.acme.test/v1"
api_key_env = "ACME_KEY"

[[providers]]
name = "demo"
kind = "demo"

[[models]]
id = "acme-large"
owned_by = "acme"
input_usd_per_mtok = "0.27"
output_usd_per_mtok = "1.10"
context_length = 65536
routes = [{ provider = "acme", upstream_model = "large-v2", priority = 1 },
          { provider = "demo", upstream_model = "demo-chat", priority = 2 }]

[[models]]
id = "demo-chat"
owned_by = "demo"
routes = [{ provider = "demo", upstream_model = "demo-chat" }]
"""


def snapshot() -> tuple:
    return (
        sorted(Provider.objects.values_list("name", "kind", "base_url", "api_key_env", "enabled")),
        sorted(Model.objects.values_list("name", "owned_by", "input_usd_per_mtok", "output_usd_per_mtok")),
        sorted(Route.objects.values_list("model__name", "provider__name", "upstream_model", "priority")),
    )


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(GOOD)
    return path


@pytest.mark.django_db
def test_import_creates_everything_and_is_idempotent(good_file):
    summary = catalog_import(path=good_file)
    assert (summary.providers, summary.models, summary.routes) == (2, 2, 3)
    first = snapshot()
    ids = sorted(Model.objects.values_list("id", flat=True))
    catalog_import(path=good_file)
    assert snapshot() == first
    assert sorted(Model.objects.values_list("id", flat=True)) == ids
    large = Model.objects.get(name="acme-large")
    assert large.input_usd_per_mtok == Decimal("0.27") and not large.is_free
    assert Model.objects.get(name="demo-chat").is_free
    assert [r.provider.name for r in large.routes.order_by("priority")] == ["acme", "demo"]


@pytest.mark.django_db
def test_a_reimport_replaces_routes_and_updates_prices(good_file, tmp_path):
    catalog_import(path=good_file)
    changed = tmp_path / "changed.toml"
    changed.write_text(GOOD.replace('"1.10"', '"1.20"').replace(
        '{ provider = "demo", upstream_model = "demo-chat", priority = 2 }', ""
    ).replace('priority = 1 },\n', 'priority = 1 }\n'))  # fmt: skip
    catalog_import(path=changed)
    large = Model.objects.get(name="acme-large")
    assert large.output_usd_per_mtok == Decimal("1.20")
    assert list(large.routes.values_list("provider__name", flat=True)) == ["acme"]


BAD = [
    ("not toml", "[[providers]\nname=", "not valid TOML"),
    ("provider without name", '[[providers]]\nbase_url = "https://x.test/v1"', "providers[0].name: is required"),
    ("bad scheme", '[[providers]]\nname = "x"\nbase_url = "ftp://x.test"', "providers[0].base_url"),
    ("unknown kind", '[[providers]]\nname = "x"\nkind = "grpc"\nbase_url = "https://x.test"', "providers[0].kind"),
    ("unknown field", '[[providers]]\nname = "x"\nbase_url = "https://x.test"\napi_key = "sk-1"',
     "providers[0].api_key: unknown field"),
    ("negative timeout", '[[providers]]\nname = "x"\nbase_url = "https://x.test"\nconnect_timeout = -1',
     "providers[0].connect_timeout"),
    ("model without routes", '[[models]]\nid = "m"\nowned_by = "o"', "models[0].routes"),
    ("route to nowhere", '[[models]]\nid = "m"\nowned_by = "o"\nroutes = [{ provider = "ghost", upstream_model = "m" }]',
     "models[0].routes[0].provider: no provider named 'ghost'"),
    ("bad price", '[[providers]]\nname = "d"\nkind = "demo"\n[[models]]\nid = "m"\nowned_by = "o"\n'
     'input_usd_per_mtok = "cheap"\nroutes = [{ provider = "d", upstream_model = "m" }]', "models[0].input_usd_per_mtok"),
    ("negative price", '[[providers]]\nname = "d"\nkind = "demo"\n[[models]]\nid = "m"\nowned_by = "o"\n'
     'output_usd_per_mtok = "-1"\nroutes = [{ provider = "d", upstream_model = "m" }]', "models[0].output_usd_per_mtok"),
    ("too precise", '[[providers]]\nname = "d"\nkind = "demo"\n[[models]]\nid = "m"\nowned_by = "o"\n'
     'output_usd_per_mtok = "0.0000001"\nroutes = [{ provider = "d", upstream_model = "m" }]', "at most 6 decimal"),
    ("duplicate model", '[[providers]]\nname = "d"\nkind = "demo"\n'
     + '[[models]]\nid = "m"\nowned_by = "o"\nroutes = [{ provider = "d", upstream_model = "m" }]\n' * 2,
     "models[1].id: 'm' appears twice"),
    ("embeddings on anthropic", '[[providers]]\nname = "c"\nkind = "anthropic"\nbase_url = "https://c.test/v1"\n'
     '[[models]]\nid = "m"\nmode = "embedding"\nowned_by = "o"\nroutes = [{ provider = "c", upstream_model = "m" }]',
     "serves only chat models"),
    ("string context", '[[providers]]\nname = "d"\nkind = "demo"\n[[models]]\nid = "m"\nowned_by = "o"\n'
     'context_length = "big"\nroutes = [{ provider = "d", upstream_model = "m" }]', "models[0].context_length"),
]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize(("label", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_names_the_field_and_changes_nothing(good_file, tmp_path, label, text, expected):
    catalog_import(path=good_file)
    before = snapshot()
    bad = tmp_path / "bad.toml"
    # A valid provider first proves that nothing before the bad entry was written either.
    bad.write_text('[[providers]]\nname = "fresh"\nbase_url = "https://fresh.test/v1"\n' + text.replace(
        "providers[0]", "providers[1]") if text.startswith("[[providers]]") else text)  # fmt: skip
    with pytest.raises(CatalogError) as info:
        catalog_import(path=bad)
    message = str(info.value)
    assert "\n" not in message
    assert expected.replace("providers[0]", "providers[1]") in message or expected in message
    assert snapshot() == before


@pytest.mark.django_db
def test_the_command_reports_one_line_and_exits_nonzero(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[models]]\nid = "m"\nowned_by = "o"\nroutes = [{ provider = "ghost", upstream_model = "m" }]'
    )
    with pytest.raises(CommandError, match=r"models\[0\].routes\[0\].provider"):
        call_command("import_catalog", str(bad))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_catalog", str(tmp_path / "missing.toml"))


@pytest.mark.django_db
def test_the_shipped_catalogs_import():
    from tests.live import ROOT

    for name in ("catalog.example.toml", "catalog.demo.toml"):
        catalog_import(path=ROOT / name)
    assert Provider.objects.get(name="demo").kind == "demo"
    assert Model.objects.get(name="demo-chat").owned_by == "demo"
    assert {"deepseek", "openai"} <= set(Provider.objects.values_list("name", flat=True))
