"""notifications and receipt explanations: what happened as codes and parameters, rendered in the reader's language

Notifications and receipt explanations were English sentences only; the Chinese pages showed them
as fine print (issue 16). New rows carry ``notifications.code/params`` and
``receipts.explanation_lines`` (a list of {code, params}); chargeapp.web.messages renders them on
the pages and in the API. Old rows are read back: every sentence the services wrote is parsed into
its code and parameters (times stay the station-local text they were written in, "HH:MM on DATE"
becoming "DATE HH:MM"; money becomes fen, energy Wh, durations seconds). A sentence that does not
parse keeps NULL and is shown as stored, untranslated: nothing is lost. ``message`` and
``explanation`` are kept as they were on every row.

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


# -- receipt explanations: a sequence of lines, each one of these sentences ----------------------------

T = r"\d\d:\d\d(?: on \d{4}-\d\d-\d\d)?"  # a station-local time, with its date when not the session's day
D = r"\d+ min(?: \d+ s)?"  # a duration
M = r"-?\d+\.\d\d [A-Z]{3}"  # money
K = r"-?\d+\.\d{3} kWh"  # energy
P = r"\d+\.\d{4} [A-Z]{3}/kWh"  # a price per kWh
BAND = rf"{K} (?:peak|flat|valley) at {P}"
LABEL = "energy|service fee|idle fee|parking"
CHANGE = rf"energy {K} -> {K}|(?:{LABEL}) {M} -> {M} \(\+?{M}\)"
CHANGES = rf"(?:(?:{CHANGE}); )*total {M} -> {M}"
IDLE = rf"Idle (?P<idle_seconds>{D}) from (?P<from>{T}) until (?P<until>{T}) \((?P<grace_seconds>{D}) free\): "
LINES: list[tuple[str, str]] = [
    ("charging_session", rf"Charger (?P<charger>\S+) from (?P<from>{T}) to (?P<to>{T}): (?P<energy_wh>{K})\."),
    ("charging_energy", rf"Energy: (?P<bands>{BAND}(?:, {BAND})*|{K}): (?P<energy_fen>{M})\."),
    ("charging_service", rf"Service: (?P<energy_wh>{K}) at (?P<price>{P}): (?P<service_fen>{M})\."),
    ("idle_slow_charger", r"No idle fee on slow chargers\."),
    ("idle_no_charging", r"No Charging time recorded: no idle fee\."),
    ("idle_not_reported", rf"Charging ended at (?P<charging_end>{T}); the connector has not reported Available "
                          r"yet: no idle fee charged\."),
    ("idle_within_grace", rf"{IDLE}no idle fee\."),
    ("idle_capped", rf"{IDLE}(?P<minutes>\d+) min at (?P<rate_fen>{M})/min = (?P<amount_fen>{M}), capped at "
                    rf"(?P<fee_fen>{M})\."),
    ("idle_billed", rf"{IDLE}(?P<minutes>\d+) min at (?P<rate_fen>{M})/min = (?P<amount_fen>{M})\."),
    ("total", rf"Total (?P<total_fen>{M})\."),
    ("parking_qualified", rf"Charged (?P<charged_seconds>{D}) \((?P<needed_seconds>{D}) needed\): first "
                          rf"(?P<free_seconds>{D}) free, until (?P<until>{T})\."),
    ("parking_not_qualified", rf"Charged (?P<charged_seconds>{D}) \((?P<needed_seconds>{D}) needed\): no free "
                              r"parking\."),
    ("parking_block_after_free", rf"(?P<blocks>1) block of (?P<block_seconds>{D}) after that: (?P<fee_fen>{M})\."),
    ("parking_blocks_after_free", rf"(?P<blocks>\d+) blocks of (?P<block_seconds>{D}) after that: "
                                  rf"(?P<fee_fen>{M})\."),
    ("parking_block_from_entry", rf"(?P<blocks>1) block of (?P<block_seconds>{D}) from entry at (?P<entry>{T}): "
                                 rf"(?P<fee_fen>{M})\."),
    ("parking_blocks_from_entry", rf"(?P<blocks>\d+) blocks of (?P<block_seconds>{D}) from entry at "
                                  rf"(?P<entry>{T}): (?P<fee_fen>{M})\."),
    ("parking_left_in_free_time", rf"Left within the free time: (?P<fee_fen>{M})\."),
    ("parking_no_time", rf"No time parked: (?P<fee_fen>{M})\."),
    ("parking_daily_cap", rf"Daily cap on (?P<day>\d{{4}}-\d\d-\d\d): (?P<blocks>\d+) blocks capped at "
                          rf"(?P<cap_fen>{M})\."),
    ("correction_recheck", rf"Correction of receipt #(?P<receipt>\d+) after late telemetry: "
                           rf"(?P<changes>{CHANGES})\."),
    ("correction_kept", rf"Kept as set by a manager: (?P<components>(?:{LABEL})(?:, (?:{LABEL}))*)\."),
    ("correction_now", r"Now:"),
    ("correction_waived", rf"Correction of receipt #(?P<receipt>\d+): (?P<components>(?:{LABEL})(?:, (?:{LABEL}))*) "
                          rf"waived by the station manager: (?P<changes>{CHANGES})\. Reason: (?P<reason>.*)"),
    ("correction_corrected", rf"Correction of receipt #(?P<receipt>\d+): "
                             rf"(?P<components>(?:{LABEL})(?:, (?:{LABEL}))*) corrected by the station manager: "
                             rf"(?P<changes>{CHANGES})\. Reason: (?P<reason>.*)"),
]
COMPILED = [(code, re.compile(rf"(?:{pattern})(?= |$)", re.S)) for code, pattern in LINES]


def _amount(text: str, decimals: int) -> int:
    """"-21.51 CNY" -> -2151; "20.000 kWh" -> 20000; "1.0755 CNY/kWh" -> 10755."""
    m = re.match(rf"(-?)(\d+)\.(\d{{{decimals}}})", text)
    return _number(*m.group(1, 2, 3))


def _stamp(text: str) -> str:
    """"15:00" stays; "15:00 on 2026-11-23" becomes "2026-11-23 15:00" (language-neutral)."""
    time, _, day = text.partition(" on ")
    return f"{day} {time}" if day else time


def _seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+) min(?: (\d+) s)?", text)
    return int(m.group(1)) * 60 + int(m.group(2) or 0)


def _line_params(code: str, groups: dict) -> dict:
    params = {}
    for name, value in groups.items():
        if name.endswith("_fen"):
            value = _amount(value, 2)
        elif name.endswith("_wh"):
            value = _amount(value, 3)
        elif name.endswith("_seconds"):
            value = _seconds(value)
        elif name == "price":
            value = _amount(value, 4)
        elif name in ("from", "to", "until", "charging_end", "entry"):
            value = _stamp(value)
        elif name in ("blocks", "minutes", "receipt"):
            value = int(value)
        elif name == "bands":
            value = [{"band": b, "wh": _amount(wh, 3), "price": _amount(price, 4)}
                     for wh, b, price in re.findall(rf"({K}) (peak|flat|valley) at ({P})", value)]
        elif name == "components":
            value = [COMPONENTS[c] for c in value.split(", ")]
        elif name == "changes":
            value = [_change(part) for part in value.split("; ")]
        params[name] = value
    return params


def parse_explanation(text: str) -> list[dict] | None:
    """An old receipt's explanation as lines of a code and params; None when some part of it is not a sentence
    the services wrote (then the receipt is shown as stored)."""
    lines, at = [], 0
    while at < len(text or ""):
        for code, pattern in COMPILED:
            m = pattern.match(text, at)
            if m is not None:
                break
        else:
            return None
        lines.append({"code": code, "params": _line_params(code, m.groupdict())})
        at = m.end() + 1
    return lines or None


def _read_back(conn, table, parse_row, write) -> None:
    """Every row of ``table`` in batches by id (a large table is never held at once): ``write`` what parses."""
    last = 0
    while True:
        rows = conn.execute(sa.select(table).where(table.c.id > last).order_by(table.c.id).limit(1000)).all()
        if not rows:
            break
        last = rows[-1].id
        updates = [u for u in (parse_row(row) for row in rows) if u is not None]
        if updates:
            conn.execute(table.update().where(table.c.id == sa.bindparam("row_id")).values(**write), updates)


def upgrade():
    op.add_column("receipts", sa.Column("explanation_lines", sa.JSON(), nullable=True))
    op.add_column("notifications", sa.Column("code", sa.String(length=48), nullable=True))
    op.add_column("notifications", sa.Column("params", sa.JSON(), nullable=True))
    notifications = sa.table("notifications", sa.column("id", sa.Integer), sa.column("kind", sa.String),
                             sa.column("message", sa.Text), sa.column("code", sa.String),
                             sa.column("params", sa.JSON))
    conn = op.get_bind()

    def notification(row):
        parsed = parse(row.kind, row.message)
        return None if parsed is None else {"row_id": row.id, "code": parsed[0], "params": parsed[1]}

    _read_back(conn, notifications, notification, {"code": sa.bindparam("code"), "params": sa.bindparam("params")})
    receipts = sa.table("receipts", sa.column("id", sa.Integer), sa.column("explanation", sa.Text),
                        sa.column("explanation_lines", sa.JSON))

    def receipt(row):
        lines = parse_explanation(row.explanation)
        return None if lines is None else {"row_id": row.id, "lines": lines}

    _read_back(conn, receipts, receipt, {"explanation_lines": sa.bindparam("lines")})


def downgrade():
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("params")
        batch.drop_column("code")
    with op.batch_alter_table("receipts") as batch:
        batch.drop_column("explanation_lines")
