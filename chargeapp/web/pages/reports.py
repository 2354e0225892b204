"""The managers' reports as pages: any date range in the station's time zone, charts,
a CSV of every table and a printable layout. The numbers come from ``services.reports``,
exactly as the API's reports.

``/manage/<code>/reports?from=YYYY-MM-DD&to=YYYY-MM-DD`` shows every section as a
table with a chart (drawn by ``static/js/reports.js`` from the ``data-chart``
attribute of its canvas; the heat map is a table of classed cells), and
``/manage/<code>/reports/<table>.csv`` with the same query is that table as CSV
(UTF-8 with BOM, headers in the page's language, money in yuan, energy in kWh,
shares in per cent, dates station-local), through the page's session login.

The range is two station-local dates, both inclusive. Without one the page shows
the last 7 full days. A range the service refuses (ends before it starts, longer than
the station's ``max_report_days``) is answered 422 with the form and the reason,
before any history is read; dates that are not YYYY-MM-DD are a 400.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Callable

from babel.numbers import format_decimal, format_percent
from flask import Blueprint, Response, abort, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import manage as manage_service
from chargeapp.services import reports as svc
from chargeapp.services.common import rules_of, station_tz
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import now, register_error_pages
from chargeapp.web.pages.security import manager_required, page_user

bp = Blueprint("pages_reports", __name__, url_prefix="/manage")
register_error_pages(bp)

DEFAULT_PRESET = "last7"
PRESETS = {
    "today": _l("Today"),
    "yesterday": _l("Yesterday"),
    "last7": _l("Last 7 days"),
    "last30": _l("Last 30 days"),
    "this_month": _l("This month"),
    "last_month": _l("Last month"),
}
WEEKDAY_NAMES = (_l("Mon"), _l("Tue"), _l("Wed"), _l("Thu"), _l("Fri"), _l("Sat"), _l("Sun"))
KIND_NAMES = {"fast": _l("fast"), "slow": _l("slow")}
MEASURE_NAMES = {"occupied": _l("occupied"), "charging": _l("charging")}


class BadDates(Exception):
    """The query's dates are not YYYY-MM-DD."""


def preset_range(name: str, today: date) -> tuple[date, date]:
    """The local dates of a preset, relative to the station's ``today``."""
    yesterday = today - timedelta(days=1)
    first_of_month = today.replace(day=1)
    if name == "today":
        return today, today
    if name == "yesterday":
        return yesterday, yesterday
    if name == "last7":
        return yesterday - timedelta(days=6), yesterday
    if name == "last30":
        return yesterday - timedelta(days=29), yesterday
    if name == "this_month":
        return first_of_month, today
    if name == "last_month":
        last = first_of_month - timedelta(days=1)
        return last.replace(day=1), last
    raise KeyError(name)


def _parse_date(text: str | None) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadDates(text) from None


def requested_range(today: date) -> tuple[date, date]:
    """The dates of ``?from=&to=`` (one alone means that day), else the default preset. Raises BadDates."""
    first, last = _parse_date(request.args.get("from")), _parse_date(request.args.get("to"))
    if first is None and last is None:
        return preset_range(DEFAULT_PRESET, today)
    return first or last, last or first


def range_message(err: svc.InvalidReportRange) -> str:
    """The service's refusal of a range, in the page's language."""
    d = err.details or {}
    if isinstance(err, svc.ReportRangeTooLong):
        return _("A report covers at most %(max)s; this range is %(days)s. Choose a shorter range.",
                 max=i18n.day_count(d.get("max_days", 0)), days=i18n.day_count(d.get("days", 0)))
    if "start" in d and "end" in d:
        return _("The range ends (%(end)s) before it starts (%(start)s).", start=d["start"], end=d["end"])
    return _("Dates are written YYYY-MM-DD.")


# -- tables: one definition serves the page, its chart and its CSV ---------------------------


def _missing(value) -> bool:
    return value is None


def show_int(v) -> str:
    return format_decimal(v, "#,##0", locale=i18n.lang())


def show_min(v) -> str:
    return format_decimal(v, "#,##0.#", locale=i18n.lang())


def show_share(v) -> str:
    return format_percent(v, "#,##0.0%", locale=i18n.lang())


def show_kwh(wh) -> str:
    return format_decimal(Decimal(wh).scaleb(-3), "#,##0.0", locale=i18n.lang())


def show_text(v) -> str:
    return str(v)


# Exact decimal conversions for the CSV (no float on the way).
def csv_share(v):
    return Decimal(str(v)).scaleb(2)


def csv_kwh(wh):
    return Decimal(int(wh)).scaleb(-3)


def csv_yuan(fen):
    return Decimal(int(fen)).scaleb(-2)


def csv_same(v):
    return v


@dataclass(frozen=True)
class Col:
    key: str
    header: object  # a lazy string
    show: Callable = show_text
    csv: Callable = csv_same
    numeric: bool = True


def text_col(key, header) -> Col:
    return Col(key, header, show_text, csv_same, numeric=False)


def int_col(key, header) -> Col:
    return Col(key, header, show_int)


def min_col(key, header) -> Col:
    return Col(key, header, show_min)


def share_col(key, header) -> Col:
    return Col(key, header, show_share, csv_share)


def kwh_col(key, header) -> Col:
    return Col(key, header, show_kwh, csv_kwh)


def yuan_col(key, header) -> Col:
    return Col(key, header, lambda v: i18n.money(v), csv_yuan)


@dataclass
class Table:
    name: str
    title: object
    columns: list[Col]
    rows: list[dict]
    footer: list[dict] = field(default_factory=list)
    chart: dict | list[dict] | None = None
    note: object = None

    @property
    def charts(self) -> list[dict]:
        """The section's charts (none, one or several)."""
        if self.chart is None:
            return []
        return self.chart if isinstance(self.chart, list) else [self.chart]

    def cells(self, row: dict) -> list[tuple[str, bool]]:
        """A row as (display text, numeric) per column; a missing value is a dash."""
        return [("—" if _missing(row.get(c.key)) else c.show(row.get(c.key)), c.numeric) for c in self.columns]

    def csv_rows(self) -> tuple[list[str], list[dict]]:
        headers = [str(c.header) for c in self.columns]
        out = []
        for row in [*self.rows, *self.footer]:
            out.append({h: (None if _missing(row.get(c.key)) else c.csv(row.get(c.key)))
                        for h, c in zip(headers, self.columns)})
        return headers, out


TABLES = ("summary", "utilization", "energy", "bookings", "availability", "revenue", "heatmap", "trend", "lounge")
# Which service reports each table needs (the CSV route computes only those).
NEEDS = {
    "summary": {"utilization"}, "utilization": {"utilization"}, "energy": {"utilization"},
    "bookings": {"utilization"}, "availability": {"utilization"}, "revenue": {"utilization"},
    "heatmap": {"heatmap"}, "trend": {"trend"}, "lounge": {"lounge"},
}


def _charger_col() -> Col:
    return text_col("label", _l("Charger"))


def _charger_rows(report: dict) -> list[dict]:
    rows = []
    for r in report["chargers"]:
        rows.append({**r, "label": r["charger"], "kind_name": str(KIND_NAMES.get(r["kind"], r["kind"]))})
    return rows


def _total_row(report: dict) -> dict:
    return {**report["total"], "label": _("Station"), "kind_name": None}


def _series(label, values, **extra) -> dict:
    return {"label": str(label), "data": values, **extra}


def _pct(v):
    return None if v is None else round(v * 100, 2)


def summary_table(report: dict) -> Table:
    t = report["total"]
    items = [
        ("occupied_share", _l("Occupied share of in-service time"), show_share, csv_share),
        ("charging_share", _l("Charging share of in-service time"), show_share, csv_share),
        ("energy_wh", _l("Energy (kWh)"), show_kwh, csv_kwh),
        ("sessions", _l("Sessions"), show_int, csv_same),
        ("mean_session_min", _l("Mean session (min)"), show_min, csv_same),
        ("bookings", _l("Bookings"), show_int, csv_same),
        ("cancellations", _l("Cancellations"), show_int, csv_same),
        ("no_shows", _l("No-shows"), show_int, csv_same),
        ("walk_ins", _l("Walk-ins (fast chargers)"), show_int, csv_same),
        ("mean_wait_min", _l("Mean wait for a held fast charger (min)"), show_min, csv_same),
        ("idle_min", _l("Idle minutes"), show_min, csv_same),
        ("faulted_min", _l("Faulted minutes"), show_min, csv_same),
        ("unavailable_min", _l("Unavailable minutes"), show_min, csv_same),
        ("free_parking_grants", _l("Free-parking grants"), show_int, csv_same),
        ("total_fen", _l("Revenue (yuan)"), lambda v: i18n.money(v), csv_yuan),
    ]
    rows = [{"measure": str(label), "value": t[key], "_show": show, "_csv": csv} for key, label, show, csv in items]
    return SummaryTable("summary", _l("Summary"), [text_col("measure", _l("Measure")), Col("value", _l("Value"))],
                        rows)


class SummaryTable(Table):
    """Measure/value rows, each value with its own format."""

    def cells(self, row):
        v = row["value"]
        return [(row["measure"], False), ("—" if v is None else row["_show"](v), True)]

    def csv_rows(self):
        headers = [str(c.header) for c in self.columns]
        return headers, [{headers[0]: r["measure"], headers[1]: None if r["value"] is None else r["_csv"](r["value"])}
                         for r in self.rows]


def utilization_table(report: dict) -> Table:
    rows = _charger_rows(report)
    return Table(
        "utilization", _l("Utilization per charger"),
        [_charger_col(), text_col("kind_name", _l("Kind")), text_col("level", _l("Level")),
         min_col("in_service_min", _l("In service (min)")), min_col("occupied_min", _l("Occupied (min)")),
         share_col("occupied_share", _l("Occupied (%)")), min_col("charging_min", _l("Charging (min)")),
         share_col("charging_share", _l("Charging (%)"))],
        rows, [_total_row(report)],
        chart={"type": "bar", "percent": True, "labels": [r["label"] for r in rows], "datasets": [
            _series(_l("Occupied (%)"), [_pct(r["occupied_share"]) for r in rows]),
            _series(_l("Charging (%)"), [_pct(r["charging_share"]) for r in rows]),
        ]},
        note=_l("Share of in-service time a connector was occupied (plugged in) and charging; "
                "a charger's connectors are summed."),
    )


def energy_table(report: dict) -> Table:
    rows = _charger_rows(report)
    return Table(
        "energy", _l("Energy and sessions per charger"),
        [_charger_col(), kwh_col("energy_wh", _l("Energy (kWh)")), int_col("sessions", _l("Sessions")),
         min_col("mean_session_min", _l("Mean session (min)")),
         min_col("median_session_min", _l("Median session (min)"))],
        rows, [_total_row(report)],
        chart={"type": "bar", "labels": [r["label"] for r in rows], "y2": True, "datasets": [
            _series(_l("Energy (kWh)"), [r["energy_wh"] / 1000 for r in rows]),
            _series(_l("Sessions"), [r["sessions"] for r in rows], axis="y2"),
        ]},
        note=_l("A session counts in the range it starts in; its energy is spread evenly over its length."),
    )


def bookings_table(report: dict) -> Table:
    rows = [r for r in _charger_rows(report) if r["kind"] == "fast" or r["bookings"]]
    return Table(
        "bookings", _l("Bookings, no-shows and walk-ins"),
        [_charger_col(), int_col("bookings", _l("Bookings")), int_col("cancellations", _l("Cancellations")),
         int_col("no_shows", _l("No-shows")), int_col("disrupted", _l("Disrupted")),
         int_col("walk_ins", _l("Walk-ins")), int_col("delayed_bookings", _l("Delayed bookings")),
         min_col("mean_wait_min", _l("Mean wait (min)"))],
        rows, [_total_row(report)],
        chart={"type": "bar", "labels": [r["label"] for r in rows], "datasets": [
            _series(_l("Bookings"), [r["bookings"] for r in rows]),
            _series(_l("Cancellations"), [r["cancellations"] for r in rows]),
            _series(_l("No-shows"), [r["no_shows"] for r in rows]),
            _series(_l("Walk-ins"), [r["walk_ins"] for r in rows]),
        ]},
        note=_l("Bookings count in the range their slot starts in. Walk-ins are fast-charger sessions no "
                "booking checked in with. The wait is the recorded delay of bookings that got a charger held."),
    )


def availability_table(report: dict) -> Table:
    rows = _charger_rows(report)
    return Table(
        "availability", _l("Idle time and availability"),
        [_charger_col(), min_col("idle_min", _l("Idle after charging (min)")),
         min_col("faulted_min", _l("Faulted (min)")), min_col("unavailable_min", _l("Unavailable (min)")),
         min_col("unknown_min", _l("No status recorded (min)"))],
        rows, [_total_row(report)],
        chart={"type": "bar", "stacked": True, "labels": [r["label"] for r in rows], "datasets": [
            _series(_l("Idle after charging (min)"), [r["idle_min"] for r in rows]),
            _series(_l("Faulted (min)"), [r["faulted_min"] for r in rows]),
            _series(_l("Unavailable (min)"), [r["unavailable_min"] for r in rows]),
        ]},
        note=_l("Idle: plugged in after the last charging of a stay. Faulted and unavailable time is not in service."),
    )


def revenue_table(report: dict) -> Table:
    rows = _charger_rows(report)
    total = _total_row(report)
    return Table(
        "revenue", _l("Revenue by component"),
        [_charger_col(), yuan_col("energy_fen", _l("Energy (yuan)")), yuan_col("service_fen", _l("Service (yuan)")),
         yuan_col("idle_fen", _l("Idle fee (yuan)")), yuan_col("parking_fen", _l("Parking (yuan)")),
         yuan_col("total_fen", _l("Total (yuan)")), int_col("free_parking_grants", _l("Free-parking grants"))],
        rows, [total],
        chart={"type": "doughnut", "money": True,
               "labels": [str(_l("Energy")), str(lazy_pgettext("revenue component", "Service")), str(_l("Idle fee")), str(_l("Parking"))],
               "datasets": [_series(_l("Revenue (yuan)"), [
                   total[k] / 100 for k in ("energy_fen", "service_fen", "idle_fen", "parking_fen")])]},
        note=_l("Booked on the day a receipt is issued; a correction counts on its own day. "
                "Parking and free-parking grants belong to the station, not to a charger."),
    )


def heat_class(share: float | None) -> str:
    return "heat-none" if share is None else f"heat-{min(10, max(0, round(share * 10)))}"


def heatmap_table(report: dict) -> Table:
    rows = []
    for i, values in enumerate(report["matrix"]):
        row = {"weekday": str(WEEKDAY_NAMES[i])}
        for h, v in zip(report["hours"], values):
            row[f"{h:02d}"] = v
        rows.append(row)
    columns = [text_col("weekday", _l("Weekday"))] + [
        Col(f"{h:02d}", f"{h:02d}", lambda v: format_decimal(round(v * 100), "0", locale=i18n.lang()), csv_share)
        for h in report["hours"]]
    measure = str(MEASURE_NAMES[report["measure"]])
    return Table("heatmap", _l("Hour of day by weekday"), columns, rows,
                 note=_("Share of in-service time %(measure)s (%%), by station-local weekday and hour.",
                        measure=measure))


def trend_table(days: list[dict]) -> Table:
    rows = [{**d, "day": d["date"]} for d in days]
    labels = [i18n.local_date(d["date"]) for d in days]
    return Table(
        "trend", _l("Daily trend"),
        [Col("day", _l("Date"), i18n.local_date, lambda d: d.isoformat(), numeric=False),
         kwh_col("energy_wh", _l("Energy (kWh)")), int_col("sessions", _l("Sessions")),
         int_col("walk_ins", _l("Walk-ins")), int_col("bookings", _l("Bookings")),
         int_col("cancellations", _l("Cancellations")), int_col("no_shows", _l("No-shows")),
         yuan_col("revenue_fen", _l("Revenue (yuan)")),
         min_col("in_service_min", _l("In service (min)")), share_col("occupied_share", _l("Occupied (%)")),
         share_col("charging_share", _l("Charging (%)"))],
        rows,
        chart=[
            {"type": "bar", "y2": True, "y2_percent": True, "labels": labels, "datasets": [
                _series(_l("Energy (kWh)"), [d["energy_wh"] / 1000 for d in days]),
                _series(_l("Occupied (%)"), [_pct(d["occupied_share"]) for d in days], type="line", axis="y2"),
                _series(_l("Charging (%)"), [_pct(d["charging_share"]) for d in days], type="line", axis="y2"),
            ]},
            {"type": "bar", "y2": True, "y2_money": True, "labels": labels, "datasets": [
                _series(_l("Walk-ins"), [d["walk_ins"] for d in days]),
                _series(_l("Bookings"), [d["bookings"] for d in days]),
                _series(_l("No-shows"), [d["no_shows"] for d in days]),
                _series(_l("Revenue (yuan)"), [d["revenue_fen"] / 100 for d in days], type="line", axis="y2"),
            ]},
        ],
        note=_l("Bookings count on the day their slot starts, revenue on the day a receipt is issued."),
    )


def lounge_table(hours: list[dict], zones: list[m.Zone]) -> Table:
    by_zone: dict[str, dict[int, dict]] = {}
    for h in hours:
        by_zone.setdefault(h["zone"], {})[h["hour"]] = h
    names = {z.code: i18n.zone_name({"name": z.name, "name_en": z.name_en}) for z in zones}
    columns = [text_col("hour", _l("Hour"))]
    for z in zones:
        cap = _("capacity %(n)d", n=z.capacity)
        columns += [
            int_col(f"{z.code}:peak", _("%(zone)s peak (%(cap)s)", zone=names[z.code], cap=cap)),
            Col(f"{z.code}:peak_on", _("%(zone)s peak day", zone=names[z.code]), i18n.local_date,
                lambda d: d.isoformat(), numeric=False),
            Col(f"{z.code}:average", _("%(zone)s average", zone=names[z.code]), show_min),
        ]
    rows = []
    for hour in range(24):
        row = {"hour": f"{hour:02d}:00"}
        for z in zones:
            h = by_zone.get(z.code, {}).get(hour, {})
            row[f"{z.code}:peak"] = h.get("peak")
            row[f"{z.code}:peak_on"] = h.get("peak_on")
            row[f"{z.code}:average"] = h.get("average")
        rows.append(row)
    datasets = []
    for z in zones:
        datasets.append(_series(_("%(zone)s average", zone=names[z.code]),
                                [r[f"{z.code}:average"] for r in rows], type="line"))
        datasets.append(_series(_("%(zone)s peak", zone=names[z.code]),
                                [r[f"{z.code}:peak"] for r in rows], type="line", dashed=True))
    return Table("lounge", _l("Lounge occupancy by hour"), columns, rows,
                 chart={"type": "line", "labels": [r["hour"] for r in rows], "datasets": datasets},
                 note=_l("Per zone and station-local hour: the highest head count in the range and the "
                         "time-weighted average."))


def build_tables(station: m.Station, first: date, last: date, names, measure: str) -> dict[str, Table]:
    """The tables ``names`` over first..last, each computed once from the services."""
    needs = set().union(*(NEEDS[n] for n in names))
    at, session = now(), db.session
    out: dict[str, Table] = {}
    if len(needs) > 1:  # the whole page: one pass over the status history serves every section
        every = svc.station_report(session, station, first, last, measure, at)
        computed = {"utilization": lambda: every["utilization"], "heatmap": lambda: every["heatmap"],
                    "trend": lambda: every["trend"], "lounge": lambda: every["lounge"]}
    else:
        computed = {
            "utilization": lambda: svc.utilization(session, station, first, last, at),
            "heatmap": lambda: svc.heatmap(session, station, first, last, measure, at),
            "trend": lambda: svc.daily_trend(session, station, first, last, at),
            "lounge": lambda: svc.lounge_by_hour(session, station, first, last, at),
        }
    if "utilization" in needs:
        report = computed["utilization"]()
        builders = {"summary": summary_table, "utilization": utilization_table, "energy": energy_table,
                    "bookings": bookings_table, "availability": availability_table, "revenue": revenue_table}
        for name, build in builders.items():
            if name in names:
                out[name] = build(report)
    if "heatmap" in needs:
        out["heatmap"] = heatmap_table(computed["heatmap"]())
    if "trend" in needs:
        out["trend"] = trend_table(computed["trend"]())
    if "lounge" in needs:
        out["lounge"] = lounge_table(computed["lounge"](), list(station.zones))
    return {n: out[n] for n in names}


# -- views -----------------------------------------------------------------------------------


def kept_args() -> dict:
    """The query arguments a preset or CSV link keeps: the heat map's measure and a ``lang`` given in the URL."""
    kept = {}
    if request.args.get("measure") in svc.MEASURES:
        kept["measure"] = request.args["measure"]
    if request.args.get("lang") in i18n.LANGUAGES:
        kept["lang"] = request.args["lang"]
    return kept


def _context(station: m.Station, today: date) -> dict:
    presets = []
    for key, label in PRESETS.items():
        a, b = preset_range(key, today)
        presets.append({"key": key, "label": label, "from": a, "to": b,
                        "url": url_for("pages_reports.report", code=station.code, **kept_args(),
                                       **{"from": a.isoformat(), "to": b.isoformat()})})
    return {"station": station, "presets": presets, "today": today, "measures": MEASURE_NAMES, "has_reports": True,
            "max_days": rules_of(station).max_report_days}


def _refused(station: m.Station, today: date, message: str, measure: str, status: int):
    """The report page with the form as sent and why its range was refused (no history read)."""
    raw = {"from": request.args.get("from", ""), "to": request.args.get("to", "")}
    return render_template("manage/report.html", **_context(station, today), error=message, raw=raw,
                           measure=measure), status


@bp.get("/<code>/reports")
@manager_required
def report(code: str):
    station = manage_service.managed_station(db.session, page_user(), code)
    today = now().astimezone(station_tz(station)).date()
    ctx = _context(station, today)
    measure = request.args.get("measure", "occupied")
    if measure not in svc.MEASURES:
        measure = "occupied"
    try:
        first, last = requested_range(today)
        svc.report_range(station, first, last, now())  # refused before any history is read
    except BadDates:
        return _refused(station, today, _("Dates are written YYYY-MM-DD."), measure, 400)
    except svc.InvalidReportRange as err:
        return _refused(station, today, range_message(err), measure, 422)
    tables = build_tables(station, first, last, TABLES, measure)
    query = {"from": first.isoformat(), "to": last.isoformat()}
    lang = {k: v for k, v in kept_args().items() if k == "lang"}
    csv_urls = {name: url_for("pages_reports.csv_export", code=station.code, table=name, **query, **lang,
                              **({"measure": measure} if name == "heatmap" else {}))
                for name in TABLES}
    current = next((p["key"] for p in ctx["presets"] if (p["from"], p["to"]) == (first, last)), None)
    return render_template(
        "manage/report.html", **ctx, tables=tables, first=first, last=last, measure=measure,
        raw={"from": first.isoformat(), "to": last.isoformat()}, csv_urls=csv_urls, current_preset=current,
        days=(last - first).days + 1, heat_class=heat_class, generated=now(),
    )


@bp.get("/<code>/reports/<table>.csv")
@manager_required
def csv_export(code: str, table: str):
    station = manage_service.managed_station(db.session, page_user(), code)
    if table not in TABLES:
        abort(404)
    today = now().astimezone(station_tz(station)).date()
    measure = request.args.get("measure", "occupied")
    if measure not in svc.MEASURES:
        measure = "occupied"
    try:
        first, last = requested_range(today)
        svc.report_range(station, first, last, now())
    except BadDates:
        return _refused(station, today, _("Dates are written YYYY-MM-DD."), measure, 400)
    except svc.InvalidReportRange as err:
        return _refused(station, today, range_message(err), measure, 422)
    headers, rows = build_tables(station, first, last, [table], measure)[table].csv_rows()
    body = svc.to_csv(rows, columns=headers, tz=station_tz(station))
    name = table if table != "heatmap" else f"heatmap-{measure}"
    filename = f"{csv_code(station.code)}-{name}-{first.isoformat()}-{last.isoformat()}.csv"
    resp = Response(body, status=200, content_type="text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["Cache-Control"] = "private, no-store"  # a station's figures: kept by no shared cache
    return resp


def csv_code(code: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", code) or "station"
