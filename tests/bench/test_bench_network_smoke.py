"""The network case of the reports benchmark runs end to end at tiny sizes (``python -m bench --smoke --only
reports --set reports.network_stations=3 ...``), so it cannot rot. Counts and equality, never a timing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
]


def test_the_network_case_generates_rolls_up_and_reports(tmp_path):
    out = tmp_path / "network.json"
    sizes = {"days": 0, "network_stations": 3, "network_ports": 10, "network_days": 2, "network_repeats": 1}
    cmd = [sys.executable, "-m", "bench", "--smoke", "--only", "reports", "--json", str(out)]
    for key, value in sizes.items():
        cmd += ["--set", f"reports.{key}={json.dumps(value)}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    results = json.loads(out.read_text())["results"]
    assert [r["name"] for r in results] == ["network_report"]  # days=0: no station case
    r = results[0]
    assert r["error"] is None and r["target"]
    f, b, s = r["figures"], r["baseline"], r["sizes"]
    assert f["report_median_ms"] is not None and f["history_report_median_ms"] is not None
    assert f["equal_to_history"] is True and f["stations_equal_to_their_own_report"] is True
    assert f["report_stations"] == 3 and f["report_sessions"] > 0
    assert (s["stations"], s["connectors"]) == (3, 10)
    assert s["service_calls"] > 0 and s["rollup_rows_by_the_job"] > 0 and f["rollup_rows_read"] > 0
    assert b["rows"] > 0 and b["rollup_rows"] == f["rollup_rows_read"]
    assert set(f["breakdown_ms"]) >= {"total_ms", "read_rollups_many_ms", "connector_days_many_ms"}
