"""Reports as tables and CSV: UTF-8 with a byte-order mark and CRLF line ends (Excel and WPS open it),
times in the station's zone, and text a spreadsheet would run as a formula defused (docs/rules.md, "Reports").
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Iterable, Sequence

# A cell starting with one of these is a formula to Excel and WPS (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(rows: Sequence[dict], columns: Sequence[str] | None = None, tz: tzinfo | None = None) -> bytes:
    """Rows as CSV bytes for Excel and WPS: UTF-8 with a BOM, CRLF line ends, a header of the keys (first-seen order, or ``columns``).

    Datetimes are RFC 3339 in ``tz`` (the station's; their own offset when None),
    dates ISO, None empty, booleans true/false, numbers (Decimal too) as written. Text that Excel would run as a
    formula (=, +, -, @) gets a leading apostrophe.
    """
    header = list(columns) if columns is not None else _keys(rows)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(k), tz) for k in header])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _keys(rows: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def _cell(value, tz: tzinfo | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return (value.astimezone(tz) if tz is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Decimal):  # exact amounts (yuan from fen): a number, never a formula
        return format(value, "f")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def utilization_rows(report: dict) -> list[dict]:
    """The utilization report as one table: a row per charger, then the station row (for CSV)."""
    return [*report["chargers"], report["total"]]


def heatmap_rows(report: dict) -> list[dict]:
    """A heat map as table rows: one per weekday, columns "00".."23" (for CSV)."""
    return [
        {"weekday": day, **{f"{h:02d}": value for h, value in zip(report["hours"], row)}}
        for day, row in zip(report["weekdays"], report["matrix"])
    ]


def network_rows(report: dict, chargers: bool = True) -> list[dict]:
    """The network report as one table (for CSV): per station its chargers (``chargers``) and its row, then the
    network row; each row names its station."""
    out = []
    for part in report["stations"]:
        for row in (*(part["chargers"] if chargers else ()), part["total"]):
            out.append({"station": part["station"], "timezone": part["timezone"], **row})
    out.append({"station": None, "timezone": None, **report["total"]})
    return out
