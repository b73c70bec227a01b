"""The offline HTML snapshot: one self-contained page that draws the dashboard with the
network off.

It holds the live dashboard's widgets (their state embedded with `ipywidgets.embed`,
the JavaScript that draws them inlined from `usage_lib.render.assets`), a static header
naming the view, a static copy of the tiles, the table and the chart figures that
is readable before (or without) JavaScript, and, when the report has them, the health
figures as static HTML. Its Content-Security-Policy lets nothing leave the file.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from ipywidgets.embed import dependency_state, embed_data

from usage_lib.core.spans import SPANS
from usage_lib.core.usage import Usage
from usage_lib.render import formatting
from usage_lib.render.assets import load_bundles
from usage_lib.render.files import Report
from usage_lib.render.health_figures import (
    BY_MODEL_HEADERS, BY_MODEL_TITLE, HEALTH_TITLE, LATENCY_HEADERS, LATENCY_TITLE, NEAR_LIMIT_HEADERS,
    NEAR_LIMIT_TITLE, NONE_NEAR_LIMIT, OVERHEAD_TITLE, facts, health_notes, latency_rows, model_rows, near_limit_rows,
)
from usage_lib.render.labels import (
    CHANGE_TITLE, COST_TILE, COST_TITLE, NEW_MARK, STOPPED_TITLE, TILES, TOP_COLUMNS, TOP_TITLES, cell_text,
    previous_period, shown_name, tile_change,
)

REPORT_SCRIPT_ID = "aqueduct-usage-report"
EXPORT_CLASS = "aq-export"  # the live page's Export control; hidden in offline snapshots


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element (no `</script>`, no `<!--`)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c").replace(
        "\u2028", "\\u2028"
    ).replace("\u2029", "\\u2029")


def _inline_script(source: str) -> str:
    # An inlined bundle must not close its own element early.
    return "<script>" + source.replace("</script", "<\\/script") + "\n</script>"


def widget_state(widget) -> tuple[dict[str, Any], dict[str, Any]]:
    """The embeddable state of `widget` and everything it references, and its view spec.

    Controls come out disabled (a snapshot has no kernel behind it)."""
    data = embed_data(views=[widget], drop_defaults=True, state=dependency_state([widget], drop_defaults=True))
    state = data["manager_state"]
    for model in state["state"].values():
        model_state = model.get("state", {})
        if model.get("model_module") == "@jupyter-widgets/controls" and _interactive(model):
            model_state["disabled"] = True
    return state, data["view_specs"][0]


def _interactive(model: Mapping[str, Any]) -> bool:
    name = model.get("model_name", "")
    return name.endswith("Model") and any(
        kind in name
        for kind in ("Button", "Dropdown", "Select", "Toggle", "Text", "Slider", "Checkbox", "Radio", "Combobox", "Picker")
    ) and "Style" not in name


def render_html(report: Report, stem: str) -> dict[str, bytes]:
    return {f"{stem}.html": snapshot_html(report).encode("utf-8")}


def snapshot_html(report: Report, *, exported_at: datetime | None = None) -> str:
    """One self-contained HTML page showing `usage` (and `widget`, the dashboard's root
    widget, drawn by the inlined widget manager when JavaScript runs)."""
    usage, widget, data = report.usage, report.widget, report.data
    exported_at = exported_at or datetime.now(timezone.utc)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may leave the file: no fetch, image, font or frame from anywhere.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'\">",
        '<meta name="generator" content="aqueduct-usage snapshot">',
        f"<title>{html.escape(page_title(report))}</title>",
        f"<style>{PAGE_CSS}</style>",
        "</head><body>",
        header_html(report, exported_at),
        _static_html(usage, data),
    ]
    if widget is not None:
        bundles = load_bundles()
        state, view = widget_state(widget)
        parts += [
            '<main id="aq-widgets" class="aq-widgets">',
            f'<script type="application/vnd.jupyter.widget-view+json">{_script_json(view)}</script>',
            "</main>",
            f'<script type="application/vnd.jupyter.widget-state+json">{_script_json(state)}</script>',
            *(_inline_script(source) for source in bundles.scripts()),
            f"<script>{_ready_js(usage)}</script>",
        ]
    if report.health is not None:
        parts.append(health_html(report))
    parts += [
        f'<script type="application/json" id="{REPORT_SCRIPT_ID}">{_script_json(data)}</script>',
        "</body></html>",
    ]
    return "\n".join(parts)


def page_title(report: Report) -> str:
    return f"Aqueduct usage: {_scope_words(report.data)}, as of {formatting.as_of(report.usage.window.now, report.usage.tz)}"


def _scope_words(data: Mapping[str, Any]) -> str:
    scope = data["scope"]
    org = "All orgs" if scope["org"] == "all" else scope["org"]["name"]
    token = f", token {scope['token']['name']}" if scope["token"] else ""
    if scope["span"] in SPANS:
        return f"{org}{token}, {SPANS[scope['span']].label}"
    return f"{org}{token}, {scope['window_start']} to {scope['window_end']}"  # a custom range


def header_html(report: Report, exported_at: datetime) -> str:
    """The banner naming the view, the instant and the viewer (offline page, PDF, PNG)."""
    usage, data = report.usage, report.data
    scope = data["scope"]
    as_of = formatting.as_of(usage.window.now, usage.tz)
    since = formatting.as_of(usage.window.start, usage.tz)
    org = "All" if scope["org"] == "all" else scope["org"]["name"]
    rows = [
        ("Org", org),
        ("Token", f"{scope['token']['name']} (#{scope['token']['id']})" if scope["token"] else "all tokens"),
        ("Time frame", f"{SPANS[scope['span']].label} ({scope['span']}), from {since}" if scope["span"] in SPANS
         else f"{usage.window.spec.label}, {formatting.time_range(usage.window.start, usage.window.until, usage.tz)}"),
        ("As of", as_of),
        ("Viewer", f"{scope['viewer']} ({scope['role']})"),
        ("Exported", exported_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S (UTC)")),
    ]
    items = "".join(
        f'<div class="aq-meta-item" data-field="{html.escape(k.lower().replace(" ", "-"))}"><dt>{html.escape(k)}</dt>'
        f"<dd>{html.escape(v)}</dd></div>"
        for k, v in rows
    )
    notices = "".join(f'<p class="aq-notice">{html.escape(n)}</p>' for n in data["notices"])
    return (
        '<header class="aq-snapshot-header" id="aq-snapshot-header">'
        f'<h1>Aqueduct usage <span class="aq-snapshot-tag">snapshot</span></h1><dl class="aq-meta">{items}</dl>'
        f"{notices}"
        '<p class="aq-hint" id="aq-hint">A static snapshot: the figures as of the time above; controls do not respond.</p>'
        "</header>"
    )


def _static_money(value: Any, currency: str | None) -> str:
    return formatting.money(None if value is None else Decimal(value), currency)


def _static_tile(key: str, label: str, value: str, change: str) -> str:
    note = f'<div class="aq-static-change">{html.escape(change)}</div>' if change else ""
    return (f'<div class="aq-static-tile" data-metric="{key}"><div class="aq-static-label">{html.escape(label)}</div>'
            f'<div class="aq-static-value">{html.escape(value)}</div>{note}</div>')


def _static_row(cells: list[tuple[str, bool]]) -> str:
    return "<tr>" + "".join(
        f'<td class="{"num" if numeric else "txt"}">{html.escape(text)}</td>' for text, numeric in cells) + "</tr>"


def _static_html(usage: Usage, report: Mapping[str, Any]) -> str:
    """The figures readable without JavaScript: the tiles (the cost one too, each with
    its change against the previous period), the top table with cost and change
    columns (and the rows that stopped), requests, tokens and cost over time and by
    model."""
    metrics, cost = report["metrics"], report["cost"]
    currency = cost["currency"]
    period = previous_period(usage.window.spec)
    tiles = "".join(
        _static_tile(key, label, fmt(metrics[key]), tile_change(report, key, period)) for key, label, fmt in TILES
    )
    note = formatting.unpriced_note(usage.cost)
    cost_change = tile_change(report, "cost", period) if currency is not None else ""
    tiles += _static_tile(COST_TILE[0], COST_TILE[1], _static_money(cost["total"], currency),
                          "; ".join(part for part in (cost_change, note) if part))
    kind = report["top"]["kind"]
    columns = TOP_COLUMNS[kind]
    compared = report.get("previous") is not None
    headers = [column.title for column in columns] + [COST_TITLE] + ([CHANGE_TITLE] if compared else [])

    def cells(row: Mapping[str, Any], change: str) -> str:
        shown = {**row, "name": shown_name(row, kind)}
        return _static_row(
            [(cell_text(column, shown[column.key]), column.numeric) for column in columns]
            + [(_static_money(row["cost"], currency), True)] + ([(change, True)] if compared else []))

    body = [cells(row, NEW_MARK if row.get("new") else formatting.change(row.get("change")))
            for row in report["top"]["rows"]]
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">No data available.</td></tr>')
    stopped = report["top"].get("stopped") or []
    stopped_html = ""
    if stopped:
        stopped_html = (
            f'<h3>{html.escape(STOPPED_TITLE.format(period=period))}</h3>'
            f'<table class="aq-static-stopped" data-kind="{kind}"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in (columns[1].title, f"Requests ({period})"))
            + "</tr></thead><tbody>"
            + "".join(_static_row([(formatting.name(shown_name(row, kind)), False),
                                   (formatting.count(row["previous_requests"]), True)]) for row in stopped)
            + "</tbody></table>"
        )
    span = usage.window.spec
    series_rows = "".join(
        _static_row([(formatting.bucket(p["bucket"], span), False), (formatting.count(p["requests"]), True),
                     (formatting.count(p["input_tokens"]), True), (formatting.count(p["output_tokens"]), True),
                     (formatting.money(p["cost"], currency), True)])
        for p in usage.timeseries.to_dict("records")
    )
    models = "".join(
        _static_row([(formatting.name(m["model"]), False), (formatting.count(m["requests"]), True),
                     (formatting.count(m["input_tokens"]), True), (formatting.count(m["output_tokens"]), True),
                     (_static_money(m["cost"], currency), True)])
        for m in report["models"]
    )
    figures = "".join(f"<th>{title}</th>" for title in ("Requests", "Input Tokens", "Output Tokens", COST_TITLE))
    return (
        '<section id="aq-static" class="aq-static">'
        f'<div class="aq-static-tiles">{tiles}</div>'
        f'<h2>{TOP_TITLES[kind]}</h2><table class="aq-static-table" data-kind="{kind}"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        + f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + stopped_html
        + '<div class="aq-static-charts">'
        f'<div><h2>Requests Over Time</h2><table class="aq-static-series"><thead><tr><th>Bucket</th>{figures}</tr></thead><tbody>{series_rows}</tbody></table></div>'
        f'<div><h2>Requests by Model</h2><table class="aq-static-models"><thead><tr><th>Model</th>{figures}</tr></thead><tbody>{models}</tbody></table></div>'
        "</div>"
        "<noscript><p class=\"aq-hint\">The charts need JavaScript; the figures above are complete.</p></noscript>"
        "</section>"
    )


def _latency_table(title: str, css: str, rows: list) -> str:
    return (
        f'<div><h3>{html.escape(title)}</h3><table class="{css}"><thead><tr><th></th>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in LATENCY_HEADERS) + "</tr></thead><tbody>"
        + "".join(_static_row([(kind, False), *((text, True) for text in texts)]) for kind, texts in latency_rows(rows))
        + "</tbody></table></div>"
    )


def health_html(report: Report) -> str:
    """The health figures as static HTML (`render.health_figures`): response-time
    percentiles (and the gateway's overhead), the one-line figures, percentiles by model,
    the tokens near a limit and the notes. Shown with or without JavaScript."""
    health = report.data["health"]
    tables = [_latency_table(LATENCY_TITLE, "aq-health-latency", health["latency"])]
    if health["processing"] is not None:
        tables.append(_latency_table(OVERHEAD_TITLE, "aq-health-overhead", health["processing"]))
    items = "".join(f"<div><dt>{html.escape(label)}</dt><dd>{html.escape(text)}</dd></div>"
                    for label, text in facts(health, report.health.oldest_in_flight_age_s))
    by_model = (
        f'<h3>{html.escape(BY_MODEL_TITLE)}</h3><table class="aq-health-models"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in BY_MODEL_HEADERS) + "</tr></thead><tbody>"
        + "".join(_static_row([(model, False), (kind, False), *((text, True) for text in texts)])
                  for model, kind, *texts in model_rows(health["latency_by_model"]))
        + "</tbody></table>"
    )
    near = ""
    if health["near_limit"] is not None:
        rows = near_limit_rows(health["near_limit"])
        near = f"<h3>{html.escape(NEAR_LIMIT_TITLE)}</h3>" + (
            '<table class="aq-health-near"><thead><tr>'
            + "".join(f"<th>{html.escape(h)}</th>" for h in NEAR_LIMIT_HEADERS) + "</tr></thead><tbody>"
            + "".join(_static_row([(token, False), (peak, True), (busiest, False)]) for token, peak, busiest in rows)
            + "</tbody></table>" if rows else f"<p>{html.escape(NONE_NEAR_LIMIT)}</p>")
    notes = "".join(f'<p class="aq-notice">{html.escape(note)}</p>' for note in health_notes(report.data))
    return (
        f'<section id="aq-health" class="aq-health"><h2>{html.escape(HEALTH_TITLE)}</h2>'
        f'<div class="aq-health-tables">{"".join(tables)}</div>'
        f'<dl class="aq-health-facts">{items}</dl>{by_model}{near}{notes}</section>'
    )


# In a file nothing may be cut off: the page ellipsizes long tile values and table cells
# to fit the screen; snapshots (offline HTML, PDF, PNG) let them wrap instead.
WHOLE_TEXT_CSS = """
.aq-dashboard .aq-tile-value, .aq-dashboard .aq-td:not(.aq-num), .aq-dashboard .aq-name-text {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  overflow-wrap: anywhere;
}
.aq-dashboard .aq-td.aq-num { overflow: visible !important; text-overflow: clip !important; min-width: max-content !important; }
"""

# The banner of a snapshot (offline page, PDF and PNG).
HEADER_CSS = """
.aq-snapshot-header{background:white;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;margin-bottom:16px}
.aq-snapshot-header h1{font-size:18px;margin:0 0 8px}
.aq-snapshot-tag{font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.05em;color:#4f46e5;
border:1px solid #c7d2fe;border-radius:4px;padding:1px 6px;vertical-align:middle}
.aq-meta{display:flex;flex-wrap:wrap;gap:4px 24px;margin:0}
.aq-meta-item{display:flex;gap:6px;font-size:13px}.aq-meta dt{color:#64748b}.aq-meta dd{margin:0;font-weight:500}
.aq-notice{margin:8px 0 0;padding:6px 10px;background:#fef9c3;border-radius:4px;font-size:13px}
.aq-hint{margin:8px 0 0;color:#64748b;font-size:12px}
"""

PAGE_CSS = WHOLE_TEXT_CSS + HEADER_CSS + """
body{margin:0;padding:16px 24px;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#0f172a;background:#f8fafc}
.aq-static-tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-bottom:16px}
.aq-static-tile{background:white;border:1px solid #e2e8f0;border-radius:8px;padding:10px 12px}
.aq-static-label{font-size:12px;color:#64748b}.aq-static-value{font-size:20px;font-weight:600;margin-top:4px}
.aq-static-change{font-size:12px;color:#64748b;margin-top:2px}
.aq-static h3{font-size:13px;margin:12px 0 6px}
.aq-static h2{font-size:15px;margin:16px 0 6px}
.aq-static table{border-collapse:collapse;background:white;font-size:13px}
.aq-static th,.aq-static td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left}
.aq-static td.num{text-align:right;font-variant-numeric:tabular-nums}
.aq-static-charts{display:flex;flex-wrap:wrap;gap:24px}
body.aq-widgets-ready .aq-static{display:none}
.aq-health{margin-top:16px;max-width:1200px;background:white;border:1px solid #e2e8f0;border-radius:8px;padding:4px 16px 12px}
.aq-health h2{font-size:15px;margin:12px 0 6px}.aq-health h3{font-size:13px;margin:12px 0 6px}
.aq-health-tables{display:flex;flex-wrap:wrap;gap:24px}
.aq-health table{border-collapse:collapse;background:white;font-size:13px}
.aq-health th,.aq-health td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left}
.aq-health td.num{text-align:right;font-variant-numeric:tabular-nums}
.aq-health-facts{margin:12px 0 0;display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;font-size:13px}
.aq-health-facts div{display:contents}.aq-health-facts dt{color:#64748b}.aq-health-facts dd{margin:0}
body.aq-widgets-ready .aq-hint#aq-hint{display:block}
.aq-export{display:none !important}
.aq-widgets .widget-subarea{max-width:100%}
"""

# True once the dashboard is drawn: not loading, tiles filled, both charts with their
# axes' ticks and one bar group per bucket / per model (zero counts draw empty bars).
DRAWN_JS = """
(expect) => {
  const root = document.querySelector('.aq-dashboard');
  if (!root || root.classList.contains('aq-loading')) return false;
  const total = root.querySelector('.aq-tile-total-requests .aq-tile-value');
  if (!total || total.textContent.trim() === '' || total.textContent.trim() === '\u2014') return false;
  for (const [css, n] of [['.aq-timeseries', expect.timeseries], ['.aq-models', expect.models]]) {
    const chart = root.querySelector(css);
    if (!chart || !chart.querySelector('svg g.axis .tick')) return false;
    if (chart.querySelectorAll('g.bargroup').length < n) return false;
  }
  return true;
}
"""


def drawn_expectation(usage: Usage) -> dict[str, int]:
    return {"timeseries": len(usage.timeseries), "models": len(usage.models)}


def _ready_js(usage: Usage) -> str:
    """Marks the offline page once the widget manager has drawn the dashboard, which
    hides the static copy; if drawing fails the static copy stays."""
    return (
        "(function () {\n"
        f"  var drawn = {DRAWN_JS.strip()};\n"
        f"  var expect = {json.dumps(drawn_expectation(usage))};\n"
        "  var tries = 0;\n"
        "  var timer = setInterval(function () {\n"
        "    tries += 1;\n"
        "    if (drawn(expect)) { clearInterval(timer); document.body.classList.add('aq-widgets-ready'); }\n"
        "    else if (tries > 1200) { clearInterval(timer); }\n"
        "  }, 50);\n"
        "})();"
    )


