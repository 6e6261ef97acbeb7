"""Human reports of one evidence record: the terminal, and one self-contained HTML page.

The page holds the verdict, the integrity results and the prober timeline as
inline SVG: outage windows shaded, the fault's start and end marked. No
script, no external resource.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

WIDTH, HEIGHT, PAD = 960, 170, 40
COLOURS = {
    "survived": "#1a7f37",
    "passed": "#1a7f37",
    "not-survived": "#cf222e",
    "failed": "#cf222e",
    "aborted": "#9a6700",
    "error": "#8250df",
}


def _clock(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%H:%M:%S")


def timeline_svg(prober: dict[str, Any]) -> str:
    """The prober's window of observation as SVG, outages shaded, the fault marked."""
    if not prober.get("started_at") or not prober.get("stopped_at"):
        return '<p class="muted">no prober timeline in this record</p>'
    start, stop = float(prober["started_at"]), float(prober["stopped_at"])
    if stop <= start:
        return '<p class="muted">no prober timeline in this record</p>'
    span = stop - start

    def x(moment: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * (min(max(moment, start), stop) - start) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="prober timeline">',
        f'<rect x="{PAD}" y="40" width="{WIDTH - 2 * PAD}" height="70" fill="#dafbe1" stroke="#8c959f"/>',
    ]
    for window in prober.get("outages", []):
        left, right = x(window["start"]), x(window["end"])
        label = f"outage {window['ms'] / 1000:.1f} s" + (" (open)" if window.get("open") else "")
        parts.append(
            f'<rect class="outage" x="{left:.1f}" y="40" width="{max(1.0, right - left):.1f}" height="70" fill="#ff8182" fill-opacity="0.85"><title>{html.escape(label)}</title></rect>'
        )
        parts.append(
            f'<text x="{(left + right) / 2:.1f}" y="80" font-size="12" text-anchor="middle" fill="#82071e">{html.escape(label)}</text>'
        )
    for key, name, colour in (
        ("fault_started_at", "fault start", "#0969da"),
        ("fault_ended_at", "fault end", "#8250df"),
    ):
        moment = prober.get(key)
        if moment:
            parts.append(
                f'<line class="fault" x1="{x(moment):.1f}" y1="25" x2="{x(moment):.1f}" y2="125" stroke="{colour}" stroke-width="2" stroke-dasharray="5,3"/>'
            )
            parts.append(
                f'<text x="{x(moment):.1f}" y="20" font-size="12" text-anchor="middle" fill="{colour}">{name} {_clock(moment)}</text>'
            )
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        moment = start + span * fraction
        parts.append(
            f'<text x="{x(moment):.1f}" y="145" font-size="11" text-anchor="middle" fill="#57606a">{_clock(moment)}</text>'
        )
    parts.append(
        f'<text x="{PAD}" y="165" font-size="11" fill="#57606a">{prober.get("head_samples", 0)} HEAD samples, {prober.get("head_failures", 0)} failed; green: state key and canary answered, red: outage</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(record: dict[str, Any], name: str = "") -> str:
    verdict = str(record.get("verdict"))
    prober = record.get("prober") or {}
    integrity = record.get("integrity") or {}
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("experiment", record.get("experiment")),
            ("fault", record.get("fault")),
            ("target", record.get("target")),
            ("recorded", record.get("recorded_at")),
            ("duration", f"{record.get('duration_s') or 0:.1f} s"),
            (
                "longest outage",
                f"{(prober.get('longest_outage_ms') or 0) / 1000:.2f} s (budget {(prober.get('budget_ms') or 0) / 1000:.0f} s)",
            ),
            ("recovery after the fault", f"{prober.get('recovery_after_fault_ms')} ms"),
            ("error classes", prober.get("error_classes")),
            ("state key before", integrity.get("state_key_before")),
            ("state key after", integrity.get("state_key_after")),
            ("state key unchanged", integrity.get("state_key_unchanged")),
            (
                "canaries written / verified",
                f"{integrity.get('canaries_written')} / {integrity.get('canaries_verified')}",
            ),
            ("record", name),
            ("record sha256", record.get("record_sha256")),
        )
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in record.get("reasons") or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>flywheel-chaos: {html.escape(str(record.get("fault")))} {html.escape(verdict)}</title>
<style>
body {{ font: 14px/1.5 system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
.verdict {{ display: inline-block; padding: .2rem .8rem; border-radius: 1rem; color: white; background: {COLOURS.get(verdict, "#57606a")}; font-weight: 600; }}
table {{ border-collapse: collapse; margin-top: 1rem; }} th, td {{ text-align: left; padding: .25rem .75rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }}
th {{ color: #57606a; font-weight: 500; }} .muted {{ color: #57606a; }}
</style></head><body>
<h1>{html.escape(str(record.get("experiment") or record.get("fault")))}</h1>
<p><span class="verdict" id="verdict">{html.escape(verdict)}</span></p>
<ul>{reasons}</ul>
<h2>Prober timeline</h2>
{timeline_svg(prober)}
<h2>Run and integrity</h2>
<table>{rows}</table>
</body></html>
"""
