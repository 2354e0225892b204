"""``python -m bench.memory_probe`` runs at tiny sizes in both modes, so it cannot rot. Rows and columns, never a
figure: what the memory is is for docs/performance.md, not for a test."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _rows(args: list[str]) -> list[list[str]]:
    proc = subprocess.run([sys.executable, "-m", "bench.memory_probe", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:7] == ["at", "rss_anon", "malloc_used", "malloc_free", "py_arenas", "py_blocks",
                                    "gc_objects"]
    return [line.split() for line in lines[1:]]


def test_jobs_mode_samples_after_the_receipts_pass():
    rows = _rows(["jobs", "--job", "receipts", "--messages", "1500", "--every", "750"])
    assert [r[0] for r in rows] == ["750", "1500"]
    for r in rows:
        assert float(r[1]) > 0 and int(r[4]) > 0 and int(r[6]) > 0  # RSS, pymalloc arenas, GC objects were read
        assert r[-1] == "sessions" and int(r[-2]) > 0


def test_bridge_mode_feeds_a_real_bridge_through_mosquitto():
    rows = _rows(["bridge", "--seconds", "3", "--rate", "100", "--every", "1"])
    assert rows[0][0] == "0s" and len(rows) >= 3
    assert int(rows[-1][-1]) > 0  # "sent N": the publisher got messages out
