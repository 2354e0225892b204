"""Managers' reports over a range of station-local dates: utilization, energy, sessions, bookings, waiting,
idle time, availability, free parking and revenue per charger, station and network; weekday x hour heat
maps; daily trends; lounge occupancy by hour; CSV export.

What counts where, with examples, is docs/rules.md ("Reports"); the costs are docs/performance.md. The
decisions that shape the code:

- Reports read only recorded history (never meter readings) and no clock: the caller passes ``now`` to
  cut a range reaching into the present. Every query is bounded by the range, so last month's report is
  the same tomorrow and costs the same next year. Functions take a session and never write.
- A range is the sum of its days: whole days that are rolled up and clean come from
  ``connector_day_rollups`` (services/rollups.py), the rest from the history; ``rollups=False`` reads only
  the history and gives the same figures. A station is a network of one: one path sums days for both.

By concern: ``dates`` (the range), ``history`` (reading the records), ``days`` (figures summed from
rollups or history), ``station`` (one station's reports), ``network`` (many stations), ``export`` (tables
and CSV); the pure usage rules are chargeapp/domain/usage.py.
"""
from chargeapp.services.reports.dates import (
    InvalidReportRange,
    ReportRange,
    ReportRangeTooLong,
    check_dates,
    report_range,
)
from chargeapp.services.reports.export import heatmap_rows, network_rows, to_csv, utilization_rows
from chargeapp.services.reports.history import connector_days, sessions_between
from chargeapp.services.reports.network import network_utilization
from chargeapp.services.reports.station import (
    MEASURES,
    WEEKDAYS,
    InvalidReportMeasure,
    daily_trend,
    heatmap,
    lounge_by_hour,
    station_report,
    utilization,
)

__all__ = [
    "MEASURES", "WEEKDAYS", "InvalidReportMeasure", "InvalidReportRange", "ReportRange", "ReportRangeTooLong",
    "check_dates", "connector_days", "daily_trend", "heatmap", "heatmap_rows", "lounge_by_hour",
    "network_rows", "network_utilization", "report_range", "sessions_between", "station_report", "to_csv",
    "utilization", "utilization_rows",
]
