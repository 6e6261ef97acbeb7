"""One summary per game day to a Slack-compatible webhook (``FLYWHEEL_NOTIFY_URL``).

The message is built only from what the summary says (suite, counts, verdicts, the gate's
mode and reason) and then redacted with every known secret, so no credential, token or the
webhook's own URL can be in it. It is posted from a daemon thread joined for at most
``timeout_s``: a slow or unreachable webhook delays the game day by at most that, never fails
it; the outcome is returned (and logged) for the summary.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections import Counter
from typing import Any

from harness.record.redact import Redactor, known_secrets

__all__ = ["TIMEOUT_S", "message", "notify"]

logger = logging.getLogger("flywheel_chaos.gameday.notify")

TIMEOUT_S = 5.0


def message(summary: dict[str, Any]) -> str:
    """The text of one game day's notification."""
    verdicts = Counter(r["verdict"] for r in summary["results"])
    counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "no runs"
    outcome = "passed" if summary["all_passed"] else "FAILED"
    lines = [
        f"flywheel-chaos game day {summary['suite']} {outcome} "
        f"({len(summary['results'])} runs in {summary['seconds'] / 60:.1f} min: {counts})"
    ]
    if summary.get("breach"):
        lines.append(f"stopped on a safety breach: {summary['breach']}")
    failed = [r for r in summary["results"] if r["verdict"] not in ("passed", "survived")]
    for result in failed[:5]:
        reasons = "; ".join(result["reasons"])[:300]
        lines.append(
            f"- {result['experiment']} run {result.get('run', 1)}: {result['verdict']}: {reasons}"
        )
    gate = summary.get("gate") or {}
    if gate:
        lines.append(f"gate: {gate.get('mode')} ({gate.get('reason')})")
    return "\n".join(lines)


def notify(url: str, summary: dict[str, Any], timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Post the summary's message to ``url``; never raises, never waits past ``timeout_s``."""
    redactor = Redactor(known_secrets(extra=[url]))
    if not url.lower().startswith(("http://", "https://")):
        return {"sent": False, "detail": "FLYWHEEL_NOTIFY_URL is not an http(s) URL: not sent"}
    body = json.dumps({"text": redactor.text(message(summary))}).encode()
    outcome: dict[str, Any] = {"sent": False, "detail": f"no answer within {timeout_s:.0f} s"}

    def post() -> None:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                outcome.update(sent=200 <= answer.status < 300, detail=f"HTTP {answer.status}")
        except Exception as exc:  # any failure is reported, never raised
            outcome.update(sent=False, detail=redactor.text(f"{type(exc).__name__}: {exc}"))

    worker = threading.Thread(target=post, name="gameday-notify", daemon=True)
    worker.start()
    worker.join(timeout_s)
    logger.info("game day notification: %s", outcome["detail"])
    return outcome
