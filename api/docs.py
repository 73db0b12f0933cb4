"""A self-contained, human-readable page of the OpenAPI document (no CDN needed)."""

from __future__ import annotations

import html
from typing import Any

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tally API</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
h2{{border-bottom:1px solid #ddd;padding-bottom:.3rem}}
.op{{margin:1rem 0;padding:.6rem 1rem;border-left:4px solid #4a7;background:#f7f9f7}}
.m{{font-weight:bold;text-transform:uppercase;margin-right:.5rem}}
code{{background:#eee;padding:0 .2rem}} pre{{background:#f4f4f4;padding:.5rem;overflow:auto}}
</style></head><body>
<h1>{title} <small>{version}</small></h1>
<p>Authenticate with <code>Authorization: Bearer &lt;api key&gt;</code>. Amounts are integers
in the asset's smallest unit. Errors are <code>application/problem+json</code> with a stable
<code>code</code>. Machine-readable document: <a href="openapi.json">openapi.json</a>.</p>
{sections}
</body></html>"""


def _schema_fields(spec: dict[str, Any], ref: dict[str, Any] | None) -> str:
    if not ref or "$ref" not in ref:
        return ""
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema = spec.get("components", {}).get("schemas", {}).get(name, {})
    required = set(schema.get("required", []))
    rows = [
        f"<li><code>{html.escape(field)}</code> {html.escape(str(info.get('type', '')))}"
        f"{' <b>required</b>' if field in required else ''}"
        f" {html.escape(info.get('description', ''))}</li>"
        for field, info in schema.get("properties", {}).items()
    ]
    return f"<ul>{''.join(rows)}</ul>" if rows else ""


def render_docs(spec: dict[str, Any]) -> str:
    """The OpenAPI document as an HTML page, grouped by tag."""
    by_tag: dict[str, list[str]] = {}
    for path, operations in sorted(spec.get("paths", {}).items()):
        for method, op in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            params = ", ".join(
                f"<code>{html.escape(p['name'])}</code>"
                for p in op.get("parameters", [])
                if p.get("in") == "query"
            )
            block = (
                f"<div class='op'><span class='m'>{method}</span><code>{html.escape(path)}</code>"
                f"<p>{html.escape(op.get('summary', ''))}</p>"
                f"{'<p>query: ' + params + '</p>' if params else ''}"
                f"{_schema_fields(spec, body.get('schema'))}"
                f"<p>responses: {', '.join(sorted(op.get('responses', {})))}</p></div>"
            )
            for tag in op.get("tags", ["other"]):
                by_tag.setdefault(tag, []).append(block)
    sections = "".join(
        f"<h2>{html.escape(tag)}</h2>{''.join(blocks)}" for tag, blocks in by_tag.items()
    )
    info = spec.get("info", {})
    return PAGE.format(
        title=html.escape(info.get("title", "API")),
        version=html.escape(info.get("version", "")),
        sections=sections,
    )
