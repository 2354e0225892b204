"""``python -m bench.soak`` runs for a few seconds, so it cannot rot: the demo, the API load and the accounting of
every device message. Its figures are for docs/reliability.md, not for a test; what a soak must never see is
asserted (no 5xx, no lost or unaccounted message, the queue drained)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_short_soak_runs_the_demo_under_api_load_and_accounts_for_every_message(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--minutes", "0.25", "--rate", "4", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["calls"] >= 40 and result["http_5xx"] == 0 and not result["connection_failures"]
    assert result["bridge"]["messages_received_total"] > 0
    assert result["lost_messages"] == 0 and result["received_not_accounted"] == 0 and result["queue_drained"]
    assert set(result["memory"]) == {"demo+broker", "web worker", "bridge", "simulators"}
    assert all(m.get("samples") for m in result["memory"].values())
    assert result["demo_exit_code"] == 0
