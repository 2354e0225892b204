"""The receipts pass's prune of old digests (``DELETE FROM receipt_checks WHERE checked_at < :window_start``, run
after every pass that priced something) on SQLite, with and without ``ix_receipt_checks_checked_at``:

    ROWS=53000 python -m bench.receipt_checks_prune

ROWS digests inside the 24-hour window (a network's day: nothing to delete, the common case), median of RUNS.
"""
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, insert, text

from chargeapp.app import create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services.receipts import RECHECK_WINDOW

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
ROWS, RUNS = int(os.environ.get("ROWS", 53000)), int(os.environ.get("RUNS", 50))

path = os.path.join(tempfile.mkdtemp(prefix="prune-"), "prune.db")
app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "CHARGEAPP_CLOCK": FixedClock(NOW)})
with app.app_context():
    db.create_all()
    s = db.session
    s.execute(insert(m.ReceiptCheck), [
        {"kind": ("charging", "parking")[i % 2], "item_id": i, "inputs": f"{i:064x}", "due_at": None,
         "checked_at": NOW - RECHECK_WINDOW + timedelta(seconds=1 + i * 86000 // ROWS)} for i in range(ROWS)])
    s.commit()
    t = m.ReceiptCheck.__table__

    def median_ms() -> float:
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            s.execute(delete(t).where(t.c.checked_at < NOW - RECHECK_WINDOW))
            times.append((time.perf_counter() - start) * 1000)
            s.rollback()
        return statistics.median(times)

    with_index = median_ms()
    s.execute(text("DROP INDEX ix_receipt_checks_checked_at"))
    s.commit()
    without = median_ms()
    print(f"{ROWS} digests in the window, median of {RUNS}: without the index {without:.2f} ms, "
          f"with it {with_index:.3f} ms")
