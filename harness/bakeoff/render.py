"""The scorecard as a Markdown table and as one self-contained HTML page with SVG charts.

The page has no script and loads nothing: the decision in one sentence at the top, the
ranked table (every number also in a ``data-`` attribute, so a test can hold the rendered
page against the JSON), then three charts: the outage of every run per fault and candidate,
survival with its Wilson 95 % interval, and OpenTofu's plans beside the prober's outage
windows for one run per fault.
"""

from __future__ import annotations

import html
from typing import Any

from harness.record.junit import Case

__all__ = ["html_page", "junit_cases", "markdown"]

COLOURS = {"no-op": "#2e7d32", "failed": "#ef6c00", "phantom": "#c62828"}


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown(card: dict[str, Any]) -> str:
    meta = card.get("meta") or {}
    lines = [
        "# Bake-off scorecard",
        "",
        f"**{card['decision']}**",
        "",
        f"Generated {card['generated_at']}" + "".join(f"; {k}: {v}" for k, v in meta.items()),
        "",
        "| rank | candidate | fault | survived | Wilson 95 % | outage p50 / p95 / max (s) | serving again (s) | HEAD failed | phantom HEADs | tofu no-op / failed / phantom | lock 2nd winners |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in card["candidates"]:
        for fault, s in c["faults"].items():
            o, t = s["outage_s"], s["tofu_plans"]
            lo, hi = s["wilson95"]
            lines.append(
                f"| {c['rank']} | {c['candidate']} | {fault} | {s['survived']}/{s['runs']} | "
                f"{_cell(lo)}-{_cell(hi)} | {_cell(o['p50'])} / {_cell(o['p95'])} / {_cell(o['max'])} | "
                f"{_cell(s['serving_again_s'])} | {s['head_failures']}/{s['head_samples']} | "
                f"{s['phantom_samples']} | {t['no-op']} / {t['failed']} / {t['phantom']} | "
                f"{s['lock_double_winners']} |"
            )
    lines += [
        "",
        "| candidate | proofs | gate | what keeps it red | lab up (s) | lab memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for c in card["candidates"]:
        gate = c.get("gate") or {}
        red = "; ".join(
            f"{r['requirement']} {r['status']}: {r['detail'][:120]}"
            for r in gate.get("red_rows", [])
        )
        proofs = ", ".join(f"{k} {_cell(v)}" for k, v in c["proofs"].items())
        lines.append(
            f"| {c['candidate']} | {proofs} | {_cell(gate.get('mode'))} (exit {_cell(gate.get('exit'))}) | "
            f"{red or '-'} | {_cell(c['lab'].get('up_s'))} | {_cell(c['lab'].get('rss_mib'))} |"
        )
    return "\n".join(lines) + "\n"


def _outage_chart(card: dict[str, Any]) -> str:
    rows = [(c["candidate"], f, s) for c in card["candidates"] for f, s in c["faults"].items()]
    top = max([o for _, _, s in rows for o in s["outage_s"]["all"]] + [1.0])
    width, row_h, left = 760, 22, 260
    parts = [
        f'<svg class="chart outages" width="{width}" height="{row_h * len(rows) + 30}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (candidate, fault, stats) in enumerate(rows):
        y = 20 + i * row_h
        parts.append(
            f'<text x="0" y="{y + 4}" font-size="11">{html.escape(candidate)} {html.escape(fault)}</text>'
        )
        parts.append(f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#ddd"/>')
        for outage in stats["outage_s"]["all"]:
            x = left + (width - 10 - left) * outage / top
            parts.append(
                f'<circle class="run" cx="{x:.1f}" cy="{y}" r="4" fill="#1565c0" data-outage="{outage}"/>'
            )
    parts.append(
        f'<text x="{left}" y="12" font-size="10">0 s</text><text x="{width - 60}" y="12" font-size="10">{top:.1f} s</text></svg>'
    )
    return "".join(parts)


def _survival_chart(card: dict[str, Any]) -> str:
    rows = [(c["candidate"], f, s) for c in card["candidates"] for f, s in c["faults"].items()]
    width, row_h, left = 760, 22, 260
    parts = [
        f'<svg class="chart survival" width="{width}" height="{row_h * len(rows) + 20}" xmlns="http://www.w3.org/2000/svg">'
    ]
    span = width - 10 - left
    for i, (candidate, fault, stats) in enumerate(rows):
        y = 10 + i * row_h
        rate = stats["survived"] / stats["runs"] if stats["runs"] else 0.0
        lo, hi = stats["wilson95"]
        parts.append(
            f'<text x="0" y="{y + 10}" font-size="11">{html.escape(candidate)} {html.escape(fault)}</text>'
        )
        parts.append(
            f'<rect class="rate" x="{left}" y="{y}" width="{span * rate:.1f}" height="12" fill="#90caf9" data-rate="{rate:.3f}"/>'
        )
        if lo is not None and hi is not None:
            parts.append(
                f'<line class="interval" x1="{left + span * lo:.1f}" y1="{y + 6}" x2="{left + span * hi:.1f}" y2="{y + 6}" stroke="#0d47a1" stroke-width="2"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _timeline_chart(candidate: str, fault: str, line: dict[str, Any]) -> str:
    width, left = 760, 10
    span = max(float(line.get("span") or 1.0), 1.0)

    def x(t: float) -> float:
        return left + (width - 2 * left) * max(0.0, t) / span

    parts = [
        f'<svg class="chart timeline" width="{width}" height="46" xmlns="http://www.w3.org/2000/svg"><text x="0" y="10" font-size="11">{html.escape(candidate)} {html.escape(fault)}: tofu plans above, outages shaded</text>'
    ]
    for window in line["outages"]:
        parts.append(
            f'<rect class="outage" x="{x(window["start"]):.1f}" y="14" width="{max(1.0, x(window["end"]) - x(window["start"])):.1f}" height="28" fill="#ffcdd2"/>'
        )
    start, end = line["fault"]
    parts.append(
        f'<line class="fault" x1="{x(start):.1f}" y1="14" x2="{x(start):.1f}" y2="42" stroke="#000"/>'
    )
    parts.append(
        f'<line class="fault" x1="{x(end):.1f}" y1="14" x2="{x(end):.1f}" y2="42" stroke="#000" stroke-dasharray="2,2"/>'
    )
    for plan in line["plans"]:
        colour = COLOURS.get(plan["outcome"], "#555")
        parts.append(
            f'<rect class="plan {plan["outcome"]}" x="{x(plan["t"]):.1f}" y="18" width="2" height="10" fill="{colour}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_page(card: dict[str, Any]) -> str:
    rows = []
    for c in card["candidates"]:
        for fault, s in c["faults"].items():
            o, t = s["outage_s"], s["tofu_plans"]
            rows.append(
                f'<tr data-candidate="{html.escape(c["candidate"])}" data-fault="{html.escape(fault)}">'
                f"<td>{c['rank']}</td><td>{html.escape(c['candidate'])}</td><td>{html.escape(fault)}</td>"
                f'<td data-k="survived">{s["survived"]}</td><td data-k="runs">{s["runs"]}</td>'
                f'<td data-k="p95">{_cell(o["p95"])}</td><td data-k="max">{_cell(o["max"])}</td>'
                f'<td data-k="phantom_samples">{s["phantom_samples"]}</td>'
                f'<td data-k="tofu_phantom">{t["phantom"]}</td><td data-k="tofu_failed">{t["failed"]}</td>'
                f'<td data-k="tofu_noop">{t["no-op"]}</td></tr>'
            )
    timelines = "".join(
        _timeline_chart(c["candidate"], fault, line)
        for c in card["candidates"]
        for fault, line in (c.get("tofu_timeline") or {}).items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>flywheel-chaos bake-off</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #eee}</style></head><body>"
        f'<h1>Bake-off scorecard</h1><p class="decision"><strong>{html.escape(card["decision"])}</strong></p>'
        f"<p>Generated {html.escape(card['generated_at'])}</p>"
        "<table class='scorecard'><tr><th>rank</th><th>candidate</th><th>fault</th><th>survived</th><th>runs</th>"
        "<th>outage p95 (s)</th><th>max (s)</th><th>phantom HEADs</th><th>phantom plans</th><th>failed plans</th><th>no-op plans</th></tr>"
        + "".join(rows)
        + "</table><h2>Outage of every run</h2>"
        + _outage_chart(card)
        + "<h2>Survival with its Wilson 95 % interval</h2>"
        + _survival_chart(card)
        + "<h2>OpenTofu beside the prober (one run per fault)</h2>"
        + timelines
        + "</body></html>\n"
    )


def junit_cases(card: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> list[Case]:
    """One testcase per run (``runs``: each candidate's finished runs) and per gate row."""
    cases = []
    for candidate, lines in runs.items():
        for line in lines:
            verdict = str(line.get("verdict"))
            good = verdict in ("survived", "passed")
            cases.append(
                Case(
                    name=f"{line['fault']} run {line['index']}",
                    classname=f"bakeoff.{candidate}",
                    seconds=float(line.get("seconds") or 0),
                    failure=None if good else f"{verdict}: {'; '.join(line.get('reasons') or [])}",
                    output=str(line.get("record") or ""),
                )
            )
    for candidate in card["candidates"]:
        for row in (candidate.get("gate") or {}).get("red_rows", []):
            cases.append(
                Case(
                    name=row["requirement"],
                    classname=f"bakeoff.{candidate['candidate']}.gate",
                    failure=f"{row['status']}: {row['detail']}",
                )
            )
    return cases
