"""notifications: what happened as a code and its parameters, rendered in the reader's language

Notifications were English sentences only; the Chinese pages showed them as fine print under a
translated title (issue 16). New rows carry ``code`` and ``params`` (chargeapp.web.messages renders
them on the pages and in the API). Old rows are read back: every sentence the services wrote is
parsed into its code and parameters (times stay the station-local text they were written in,
money becomes fen, energy Wh). A sentence that does not parse keeps code and params NULL and is
shown as stored, untranslated: nothing is lost. ``message`` is kept as it was on every row.

The patterns below are the sentences as the services wrote them up to this revision; they are
frozen here on purpose (a later wording change must not change what this migration did).

Revision ID: a3c9e5d1f047
Revises: ddd776fabd23
Create Date: 2026-12-08 10:00:00

"""
from __future__ import annotations

import re

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c9e5d1f047'
down_revision = 'ddd776fabd23'
branch_labels = None
depends_on = None

HHMM = r"\d\d:\d\d"
DAY_HHMM = r"\d\d-\d\d \d\d:\d\d"

# kind -> [(code, pattern)], the more specific first.
PATTERNS: dict[str, list[tuple[str, str]]] = {
    "booked": [("booked", rf"Booked (?P<charger>\S+) \((?P<level>.*)\) at (?P<station>.+), "
                          rf"(?P<start>{DAY_HHMM})-(?P<end>{HHMM})\.")],
    "cancelled": [("cancelled", r"Booking cancelled, free of charge\.")],
    "no_show": [("no_show_cancelled_late", r"Cancelled after the slot started: counted as a no-show\."),
                ("no_show", r"No check-in within (?P<minutes>\d+) minutes of the slot: the booking is a no-show "
                            r"and the charger was released\.")],
    "suspended": [("suspended", r"Booking suspended until (?P<until>\d{4}-\d\d-\d\d \d\d:\d\d) after repeated "
                                r"no-shows\. Existing bookings stand\.")],
    "suspension_lifted": [("suspension_lifted", r"Your booking suspension was lifted\.")],
    "delayed": [("delayed", rf"No fast charger is free yet for your (?P<slot>{HHMM}) slot: we will hold the first "
                            r"one that frees up and tell you which\."),
                ("delayed_hold_refused", r"The held charger answered '(?P<answer>[^']*)'; we will hold the first "
                                         r"fast charger that frees up\.")],
    "held": [("held_after_delay", rf"(?P<where>.+) is now held for you, (?P<delay>\d+) min after your slot "
                                  rf"started\. Check in by (?P<deadline>{HHMM})\."),
             ("held_after_wait", rf"(?P<where>.+) is now held for you\. Check in by (?P<deadline>{HHMM})\."),
             ("held", rf"(?P<where>.+) is held for you until (?P<deadline>{HHMM})\.")],
    "moved": [("moved", rf"Your charger was busy or out of service: moved to (?P<where>.+), held until "
                        rf"(?P<deadline>{HHMM})\."),
              ("moved_charger_down", rf"(?P<from>\S+) is out of service: your (?P<slot>{HHMM}) slot moved to "
                                     r"(?P<charger>\S+)\.")],
    "disrupted": [("disrupted_charger_down", rf"(?P<from>\S+) is out of service and no other fast charger is free "
                                             rf"for your (?P<slot>{HHMM}) slot: the booking is cancelled at no "
                                             r"cost\. Please book again\."),
                  ("disrupted_maintenance", rf"(?P<station>.+) is closed for maintenance during your "
                                            rf"(?P<start>{DAY_HHMM})-(?P<end>{HHMM}) slot: the booking is "
                                            r"cancelled at no cost\. Please book another slot\.")],
    "no_show_reversed": [("no_show_reversed", r"Your charger reported a start inside the check-in window: the "
                                              r"no-show is withdrawn\.")],
    "checked_in": [("checked_in", r"Checked in on (?P<charger>\S+)\.")],
    "receipt_corrected": [("receipt_corrected", r"Receipt #(?P<receipt>\d+) was corrected: (?P<changes>.+)\.")],
}
INTEGERS = {"minutes", "delay", "receipt"}

MONEY = r"(-?)(\d+)\.(\d\d) [A-Z]{3}"
KWH = r"(-?)(\d+)\.(\d{3}) kWh"
COMPONENTS = {"energy": "energy_fen", "service fee": "service_fen", "idle fee": "idle_fen", "parking": "parking_fen"}


def _number(sign: str, whole: str, part: str) -> int:
    return (-1 if sign else 1) * int(whole + part)


def _change(text: str) -> dict | None:
    """One change of a correction ("service fee 1.00 CNY -> 2.00 CNY (+1.00 CNY)") as services.receipts.changes."""
    m = re.fullmatch(rf"energy {KWH} -> {KWH}", text)
    if m:
        return {"what": "energy", "before": _number(*m.group(1, 2, 3)), "after": _number(*m.group(4, 5, 6))}
    m = re.fullmatch(rf"total {MONEY} -> {MONEY}", text)
    if m:
        return {"what": "total", "before": _number(*m.group(1, 2, 3)), "after": _number(*m.group(4, 5, 6))}
    m = re.fullmatch(rf"(?P<label>[a-z ]+) {MONEY} -> {MONEY} \(\+?{MONEY}\)", text)
    if m and m.group("label") in COMPONENTS:
        return {"what": COMPONENTS[m.group("label")], "before": _number(*m.group(2, 3, 4)),
                "after": _number(*m.group(5, 6, 7))}
    return None


def parse(kind: str, message: str) -> tuple[str, dict] | None:
    """An old notification's sentence as (code, params); None when it is not one the services wrote."""
    for code, pattern in PATTERNS.get(kind, []):
        m = re.fullmatch(pattern, message or "")
        if m is None:
            continue
        params = {k: int(v) if k in INTEGERS else v for k, v in m.groupdict().items()}
        if code == "receipt_corrected":
            changes = [_change(part) for part in params["changes"].split("; ")]
            if any(c is None for c in changes) or changes[-1]["what"] != "total":
                return None
            params["changes"] = changes
        return code, params
    return None


def upgrade():
    op.add_column("notifications", sa.Column("code", sa.String(length=48), nullable=True))
    op.add_column("notifications", sa.Column("params", sa.JSON(), nullable=True))
    notifications = sa.table("notifications", sa.column("id", sa.Integer), sa.column("kind", sa.String),
                             sa.column("message", sa.Text), sa.column("code", sa.String),
                             sa.column("params", sa.JSON))
    conn = op.get_bind()
    last = 0
    while True:  # in batches by id, so a large table is never held in memory at once
        rows = conn.execute(sa.select(notifications.c.id, notifications.c.kind, notifications.c.message)
                            .where(notifications.c.id > last).order_by(notifications.c.id).limit(1000)).all()
        if not rows:
            break
        last = rows[-1].id
        parsed = [(row.id, parse(row.kind, row.message)) for row in rows]
        updates = [{"row_id": i, "code": p[0], "params": p[1]} for i, p in parsed if p is not None]
        if updates:
            conn.execute(notifications.update().where(notifications.c.id == sa.bindparam("row_id"))
                         .values(code=sa.bindparam("code"), params=sa.bindparam("params")), updates)


def downgrade():
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("params")
        batch.drop_column("code")
