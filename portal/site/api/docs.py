"""A plain, self-contained documentation page for the management API, rendered from its OpenAPI schema.

No JavaScript and nothing from a CDN: Swagger UI or Redoc would need their assets served from somewhere, and
the schema itself (/api/schema/) works with any OpenAPI tool a user already has.
"""

from django.http import HttpRequest, HttpResponse
from django.template import Context, Engine
from drf_spectacular.generators import SchemaGenerator

_PAGE = Engine(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ info.title }}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 code, pre { font-family: ui-monospace, monospace; background: #f4f4f4; padding: 0 .2em; }
 .op { border-top: 1px solid #ddd; padding: .6rem 0; }
 .method { display: inline-block; min-width: 4.5em; font-weight: bold; }
 table { border-collapse: collapse; margin: .3rem 0; } td, th { text-align: left; padding: .1rem .8rem .1rem 0; }
 .muted { color: #666; }
</style></head><body>
<h1>{{ info.title }} <span class="muted">{{ info.version }}</span></h1>
<p>{{ info.description }}</p>
<p>The machine-readable schema: <a href="{{ schema_url }}">{{ schema_url }}</a> (OpenAPI 3, YAML; add
<code>?format=json</code> for JSON). Errors always look like
<code>{"error": {"message": "...", "code": "..."}}</code>.</p>
{% for op in operations %}
<div class="op" id="{{ op.operation_id }}">
  <div><span class="method">{{ op.method }}</span><code>{{ op.path }}</code></div>
  {% if op.summary %}<div>{{ op.summary }}</div>{% endif %}
  {% if op.description %}<div class="muted">{{ op.description }}</div>{% endif %}
  {% if op.parameters %}<table>{% for p in op.parameters %}
    <tr><td><code>{{ p.name }}</code></td><td class="muted">{{ p.in }}{% if p.required %}, required{% endif %}</td>
        <td>{{ p.description }}</td></tr>{% endfor %}</table>{% endif %}
  <div class="muted">Answers: {{ op.statuses|join:", " }}</div>
</div>
{% endfor %}
</body></html>""")


def api_docs(request: HttpRequest) -> HttpResponse:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(), "path": path, "operation_id": op.get("operationId", ""),
                    "summary": op.get("summary", ""), "description": op.get("description", ""),
                    "parameters": op.get("parameters", []), "statuses": list(op.get("responses", {})),
                }
            )  # fmt: skip
    context = Context({"info": schema["info"], "operations": operations, "schema_url": "/api/schema/"})
    return HttpResponse(_PAGE.render(context))
