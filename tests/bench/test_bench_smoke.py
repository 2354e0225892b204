"""The benchmark harness runs end to end (``python -m bench --smoke``), so it cannot rot.

Tiny sizes, every benchmark, on SQLite. Asserts only that each benchmark ran and
produced its figures and baseline: never a timing (machines are shared and
noisy; the figures live in docs/performance.md).
"""
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

EXPECTED = {
    "bridge_ingest": (("bridge_msg_per_s", "messages", "db_applied_rows", "lost"), ("bare_msg_per_s", "bare_received")),
    "live_latency": (("levels",), ("p50_ms", "p99_ms", "samples")),
    "booking_api": (("per_second", "p50_ms", "p99_ms", "book", "cancel"), ("per_second", "p99_ms")),
    "double_booking": (("overlapping_bookings_at_end", "worst_overlap_seen_while_running", "won"), ("allowed_overlaps",)),
    "reports": (("report_median_ms", "report_sessions"), ("bare_read_median_ms", "rows")),
    "memory": (("bridge", "web_worker", "flat"), ("bridge", "web_worker")),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(out.read_text())


def test_every_benchmark_ran_with_its_figures_and_baseline(smoke):
    results = {r["name"]: r for r in smoke["results"]}
    assert set(results) == set(EXPECTED)
    for name, (figures, baseline) in EXPECTED.items():
        r = results[name]
        assert r["error"] is None, (name, r["error"])
        assert r["backend"] == "sqlite"
        for key in figures:
            assert r["figures"].get(key) is not None, (name, key, r["figures"])
        for key in baseline:
            assert r["baseline"].get(key) is not None, (name, key, r["baseline"])
        assert r["target"], name


def test_the_runs_did_real_work(smoke):
    """Counts, not timings: messages arrived and were applied, requests were answered, rows were read."""
    r = {x["name"]: x for x in smoke["results"]}
    ingest = r["bridge_ingest"]["figures"]
    assert ingest["lost"] == 0 and ingest["db_applied_rows"] == ingest["messages"]
    assert r["bridge_ingest"]["baseline"]["bare_received"] == ingest["messages"]
    assert all(level["samples"] > 0 for level in r["live_latency"]["figures"]["levels"])
    assert r["booking_api"]["figures"]["book"]["statuses"].get("201", 0) > 0
    assert r["booking_api"]["figures"]["cancel"]["statuses"].get("200", 0) > 0
    assert r["double_booking"]["figures"]["overlapping_bookings_at_end"] == 0
    assert r["double_booking"]["figures"]["won"] > 0
    assert r["reports"]["baseline"]["rows"] > 0 and r["reports"]["figures"]["report_sessions"] > 0
    assert r["memory"]["figures"]["bridge_applied_total"] > 0


def test_the_machine_is_described(smoke):
    m = smoke["machine"]
    for key in ("nproc", "cpu", "python", "sqlite", "mosquitto"):
        assert m.get(key), key
