"""Small pieces of markup used on many pages."""

import textwrap

from django import template
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


class CodeBlockNode(template.Node):
    def __init__(self, nodelist, title, block_id) -> None:
        self.nodelist, self.title, self.block_id = nodelist, title, block_id

    def render(self, context) -> str:
        # The body is template source (trusted) with autoescaped variables, so it is already safe HTML.
        body = textwrap.dedent(self.nodelist.render(context)).strip("\n")
        icon = render_to_string("_icon.html", {"name": "copy"})
        block_id = self.block_id.resolve(context)
        return format_html(
            '<div class="code"><div class="code-head"><span>{}</span>'
            '<button type="button" class="btn btn-sm btn-secondary copy" data-copy-target="{}" '
            'aria-label="Copy {} example">{}<span data-copy-label>Copy</span></button></div>'
            '<pre id="{}"><code>{}</code></pre></div>',
            self.title.resolve(context), block_id, self.title.resolve(context), mark_safe(icon),
            block_id, mark_safe(body),
        )  # fmt: skip


@register.tag
def codeblock(parser, token):
    """``{% codeblock "curl" "example-id" %}...{% endcodeblock %}``: a dark code block with a copy button."""
    bits = token.split_contents()
    if len(bits) != 3:
        raise template.TemplateSyntaxError("codeblock takes a title and an element id")
    nodelist = parser.parse(("endcodeblock",))
    parser.delete_first_token()
    return CodeBlockNode(nodelist, parser.compile_filter(bits[1]), parser.compile_filter(bits[2]))


@register.filter
def percent_of(part, whole) -> int:
    """``part`` as a whole percentage of ``whole`` (0 when ``whole`` is 0), for meters."""
    try:
        return max(0, min(100, round(100 * float(part) / float(whole))))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0


@register.filter
def status_badge(status) -> str:
    """The badge style for an HTTP status: green for success, amber for client errors, red for server errors."""
    try:
        code = int(status)
    except (TypeError, ValueError):
        return "badge"
    if code < 400:
        return "badge badge-success"
    return "badge badge-warning" if code < 500 else "badge badge-danger"


@register.filter
def key_status_badge(status: str) -> str:
    return {"active": "badge badge-success badge-dot", "revoked": "badge badge-danger"}.get(
        status, "badge badge-warning"
    )
