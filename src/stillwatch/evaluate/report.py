"""A self-contained HTML report: tables and inline SVG plots, nothing fetched when opened."""

from __future__ import annotations

import html
from typing import Any

from stillwatch.evaluate.metrics import Evaluation

W, H, PAD = 360, 300, 40


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def roc_svg(points: list[tuple[float, float]], auc: float | None) -> str:
    def xy(fpr: float, tpr: float) -> tuple[float, float]:
        return PAD + fpr * (W - 2 * PAD), H - PAD - tpr * (H - 2 * PAD)

    path = " ".join(
        f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}"
        for i, (x, y) in enumerate(xy(f, t) for f, t in points)
    )
    x0, y0 = xy(0, 0)
    x1, y1 = xy(1, 1)
    title = "ROC over risk" + (f" (AUC {auc:.4f})" if auc is not None else "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img">'
        f"<title>{title}</title>"
        f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" '
        f'stroke="#999"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#ccc" stroke-dasharray="4"/>'
        f'<path d="{path}" fill="none" stroke="#1f5fa8" stroke-width="2"/>'
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="12">false-positive rate'
        f'</text><text x="12" y="{H / 2}" font-size="12" transform="rotate(-90 12 {H / 2})" '
        f'text-anchor="middle">attacker recall</text>'
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="13">{html.escape(title)}</text>'
        "</svg>"
    )


def bars_svg(rows: list[tuple[str, float, str]]) -> str:
    """Horizontal bars of flag rate per persona; red for attackers, grey for benign."""
    row_h, label_w, bar_w = 20, 190, 260
    height = row_h * len(rows) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" '
        f'height="{height}" role="img"><title>share flagged by persona</title>'
    ]
    for i, (name, rate, kind) in enumerate(rows):
        y = 20 + i * row_h
        colour = "#b3261e" if kind == "attacker" else "#7a7a7a"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">'
            f"{html.escape(name)}</text>"
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{max(1, rate * bar_w):.1f}" '
            f'height="{row_h - 6}" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{label_w + rate * bar_w + 4:.1f}" y="{y + 13}" font-size="11">'
            f"{100 * rate:.1f}%</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(ev: Evaluation, title: str = "stillwatch evaluation") -> str:
    summary = [
        ["attacker accounts", ev.accounts["attacker"]],
        ["benign accounts", ev.accounts["benign"]],
        ["attacker-account recall", _pct(ev.attacker_recall)],
        ["benign false-positive rate", _pct(ev.benign_fpr)],
        ["campaign recall", _pct(ev.campaigns["recall"])],
        ["campaign purity", _pct(ev.campaigns["purity"])],
        ["extraction yield", _pct(ev.extraction_yield)],
        ["median requests before flag", ev.before_detection["requests"]["median"]],
        ["median hours before flag", ev.before_detection["hours"]["median"]],
        ["benign accounts blocked", ev.benign_affected["blocked_accounts"]],
        ["ROC AUC", "n/a" if ev.roc["auc"] is None else f"{ev.roc['auc']:.4f}"],
    ]
    personas = [
        [name, p["label"], p["accounts"], p["flagged"], _pct(p["rate"])]
        for name, p in ev.by_persona.items()
    ]
    bars = [(name, p["rate"], p["label"]) for name, p in ev.by_persona.items()]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ev.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: left; }}
th {{ background: #f3f3f3; }}
.plots {{ display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{_table(["figure", "value"], summary)}
<div class="plots">{roc_svg(ev.roc["points"], ev.roc["auc"])}{bars_svg(bars)}</div>
<h2>By persona and strategy</h2>
{_table(["persona", "label", "accounts", "flagged", "share flagged"], personas)}
<h2>Benign requests affected</h2>
{_table(["measure", "counts"], [[k, v] for k, v in ev.benign_affected.items()])}
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
