"""Languages of the pages (Simplified Chinese by default, English) and how things are written in each.

The services speak English (their error messages are raised in English). The pages translate
what they can name: statuses, amenities, notification kinds and every refusal by its stable
error ``code``. Notifications, receipt explanations and the attention list are recorded as a
code and params and rendered by ``chargeapp.web.messages`` (shared with the API).
"""
from __future__ import annotations

from datetime import date, datetime, tzinfo
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_skeleton
from babel.numbers import format_currency
from flask import current_app, request, session
from flask_babel import get_locale, gettext, lazy_gettext as _l, lazy_pgettext, ngettext, pgettext

from chargeapp.domain.errors import DomainError
from chargeapp.web import messages

LANGUAGES = {"zh_Hans": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh_Hans"


def select_locale() -> str:
    """``?lang=`` (a TV board's URL), else the language chosen in this session, else the default."""
    wanted = request.args.get("lang") if request else None
    if wanted in LANGUAGES:
        return wanted
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return current_app.config.get("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)


def lang() -> str:
    """The language of this response ("zh_Hans" or "en")."""
    return str(get_locale() or DEFAULT_LANGUAGE)


def html_lang() -> str:
    return "zh-Hans" if lang().startswith("zh") else "en"


def is_english() -> bool:
    return lang() == "en"


# -- names of things --------------------------------------------------------------------

STATUS = {
    "Available": _l("Free"),
    "Preparing": _l("Plugged in"),
    "Charging": lazy_pgettext("charger status", "Charging"),
    "SuspendedEV": _l("Paused by car"),
    "SuspendedEVSE": _l("Paused by charger"),
    "Finishing": _l("Finishing"),
    "Reserved": _l("Reserved"),
    "Unavailable": _l("Unavailable"),
    "Faulted": _l("Faulted"),
    "offline": _l("Offline"),
    "out_of_service": _l("Out of service"),
}

# Connector status -> the colour family the pages draw it in.
STATUS_CLASS = {
    "Available": "free", "Preparing": "busy", "Charging": "charging", "SuspendedEV": "busy",
    "SuspendedEVSE": "busy", "Finishing": "busy", "Reserved": "reserved", "Unavailable": "down",
    "Faulted": "down", "offline": "off", "out_of_service": "off",
}

# The legend of the board's colours, one entry per colour family of STATUS_CLASS, in the board's order.
STATUS_LEGEND = (
    ("free", _l("Free")),
    ("charging", lazy_pgettext("charger status", "Charging")),
    ("busy", lazy_pgettext("board legend", "Plugged in, not charging")),
    ("reserved", _l("Reserved")),
    ("down", lazy_pgettext("board legend", "Faulted / unavailable")),
    ("off", lazy_pgettext("board legend", "Offline / out of service")),
)

AMENITIES = {
    "hot_water_24h": _l("Hot water 24 h"),
    "microwave": _l("Microwave"),
    "wifi": _l("Wi-Fi"),
    "phone_charging": _l("Phone charging"),
    "books": _l("Books"),
    "tables": _l("Tables"),
    "restroom": _l("Restroom"),
}

BOOKING_STATUS = {
    "booked": _l("Booked"),
    "held": _l("Charger held for you"),
    "waiting": _l("Waiting for a free charger"),
    "checked_in": _l("Checked in"),
    "cancelled": _l("Cancelled"),
    "no_show": _l("No-show"),
    "disrupted": _l("Disrupted (charger out of service)"),
}

NOTIFICATION_KIND = {
    "booked": _l("Booked"),
    "cancelled": _l("Cancelled"),
    "held": _l("Charger held"),
    "moved": _l("Moved to another charger"),
    "delayed": _l("Delayed"),
    "disrupted": _l("Disrupted"),
    "no_show": _l("No-show"),
    "no_show_reversed": _l("No-show withdrawn"),
    "checked_in": _l("Checked in"),
    "suspended": _l("Booking suspended"),
    "suspension_lifted": _l("Suspension lifted"),
    "receipt_corrected": _l("Receipt corrected"),
}

RECEIPT_KIND = {
    "charging": _l("Charging"),
    "parking": _l("Parking"),
    "correction": _l("Correction"),
}


def connector_state(charger: dict) -> str:
    """The state a driver sees: offline and out of service before the connector's own status."""
    if not charger.get("online", True):
        return "offline"
    if not charger.get("in_service", True):
        return "out_of_service"
    return charger.get("status") or "Unavailable"


def status_label(state: str) -> str:
    return str(STATUS.get(state, state))


def status_class(state: str) -> str:
    return STATUS_CLASS.get(state, "down")


def amenity_label(code: str) -> str:
    return str(AMENITIES.get(code, code.replace("_", " ")))


def station_name(station) -> str:
    """The station's name in the page's language (the Chinese name is the station's own)."""
    name_en = station.get("name_en") if isinstance(station, dict) else getattr(station, "name_en", None)
    name = station.get("name") if isinstance(station, dict) else station.name
    return name_en if is_english() and name_en else name


def zone_name(zone: dict) -> str:
    return zone.get("name_en") if is_english() and zone.get("name_en") else zone["name"]


# -- floors ---------------------------------------------------------------------------------
# A charger's level is the station's own label, as painted in its garage ("B1", "G", "L2").
# Chinese garages paint basements "B1" and say 地下一层; there is no "G": the ground floor is
# 地面层. So: a tile shows the painted label (B1, L2) except the ground floor (地面层 / G); a
# sentence names the floor in words with the painted label after it ("地下一层（B1）" / "level B1").

_GROUND = {"G", "GF", "0", "0F", "L0"}
_CN_DIGITS = "零一二三四五六七八九十"


def _cn_number(n: int) -> str:
    """1-19 in Chinese numerals (一 … 十九); larger floors keep their digits."""
    if n <= 10:
        return _CN_DIGITS[n]
    return "十" + _CN_DIGITS[n - 10] if n < 20 else str(n)


def _floor_parts(level: str) -> tuple[str, int | None]:
    """("ground" | "basement" | "above" | "other", the floor number)."""
    label = (level or "").strip().upper()
    if label in _GROUND:
        return "ground", 0
    if label[:1] == "B" and label[1:].isdigit() and int(label[1:]) > 0:
        return "basement", int(label[1:])
    if label[:1] == "L" and label[1:].isdigit() and int(label[1:]) > 0:
        return "above", int(label[1:])
    if label.endswith("F") and label[:-1].isdigit() and int(label[:-1]) > 0:
        return "above", int(label[:-1])
    return "other", None


def floor_short(level: str | None) -> str:
    """A floor as a tile or a table cell shows it: the painted label, the ground floor as 地面层 / G."""
    if not level:
        return ""
    kind, _ = _floor_parts(level)
    if kind == "ground":
        return str(pgettext("floor, short", "G"))
    return level


def floor_name(level: str | None) -> str:
    """A floor in a sentence: "地下一层（B1）", "地面层", "二层（L2）" / "level B1", "the ground floor"."""
    if not level:
        return ""
    kind, n = _floor_parts(level)
    if kind == "ground":
        return str(pgettext("floor", "the ground floor"))
    if is_english():
        return gettext("level %(label)s", label=level)
    if kind == "basement":
        return f"地下{_cn_number(n)}层（{level}）"
    if kind == "above":
        return f"{_cn_number(n)}层（{level}）"
    return gettext("level %(label)s", label=level)


# -- refusals ------------------------------------------------------------------------------

REFUSALS = {
    "slot_not_on_grid": _l("Slots start at :00 and :30 station time."),
    "slot_in_past": _l("That slot has already started: pick a later one."),
    "slot_too_far_ahead": _l("Slots can be booked at most 24 hours ahead."),
    "station_closed": _l("The station is closed at that time."),
    "station_maintenance": _l("The station has maintenance at that time."),
    "slot_unavailable": _l("Sorry, that slot was just taken: every bookable fast charger is booked. Pick another slot."),
    "charger_not_bookable": _l("That charger cannot be booked (only fast chargers in service can)."),
    "active_booking_exists": _l("You already have a booking. Cancel it first to book another slot."),
    "driver_suspended": _l("Booking is suspended after repeated no-shows."),
    "booking_not_found": _l("No such booking."),
    "booking_not_cancellable": _l("This booking can no longer be cancelled."),
    "idempotency_key_reused": _l("This form was already used for another booking: please try again."),
    "station_not_found": _l("No such station."),
    "charger_not_found": _l("No such charger at this station."),
    "charging_session_not_found": _l("No such charging session."),
    "session_not_open": _l("That charging session has already ended."),
    "charger_offline": _l("The charger is offline: start with your card or use another charger."),
    "charger_out_of_service": _l("The charger is out of service: please use another one."),
    "charger_busy": _l("The charger is in use: please use another one."),
    "charger_held_for_booking": _l("The charger is held for another driver's booking: please use another one."),
    "no_id_tag": _l("Your account has no charging tag yet: ask the station staff."),
    "invalid_credentials": _l("Wrong email or password."),
    "email_taken": _l("An account with this email already exists: log in instead."),
    # plates (domain.plates): the rule broken, with an example
    "invalid_plate": _l("Enter the plate of the car you drive, such as 沪A12345."),
    "plate_province": _l("A plate starts with a province's abbreviation, such as 沪 or 粤: 沪A12345."),
    "plate_office_letter": _l("The second character of a plate is a letter (A-Z, not I or O): 沪A12345."),
    "plate_length": _l("A plate has 7 characters (沪A12345), or 8 on a new-energy car (沪AD12345 or 沪A12345D)."),
    "plate_serial": _l("After the province and the letter come 5 letters or digits (no I or O): 沪A12345."),
    "plate_new_energy": _l("An 8-character new-energy plate has D or F third and 5 more letters or digits ending "
                           "in 4 digits (small car: 沪AD12345), or 5 digits and then D or F (large vehicle: "
                           "沪A12345D)."),
    "plate_special": _l("Police (警), driving-school (学), trailer (挂), embassy (使), consulate (领), Hong Kong or "
                        "Macau (港/澳) and military plates cannot be registered: register the ordinary or "
                        "new-energy plate of the car you drive for work, such as 沪A12345 or 沪AD12345."),
    "plate_already_registered": _l("That plate is already registered to your account."),
    "too_many_plates": _l("At most 5 plates are registered to one account at a time: remove one first."),
    "plate_not_registered": _l("That plate is not registered to your account."),
    # the account
    "name_too_long": _l("A name has at most 100 characters."),
    "password_length": _l("A password has 8 to 200 characters."),
    "current_password_wrong": _l("The current password is not right: the password was not changed."),
    "reset_link_invalid": _l("This password reset link is not valid: ask the station staff for a new one."),
    "reset_link_expired": _l("This password reset link has expired: ask the station staff for a new one."),
    "reset_link_used": _l("This password reset link was already used (or the password changed since): "
                          "ask for a new one."),
}

# Why a whole day has no slot to book (``booking.day_unbookable_reason``), by the same codes.
DAY_REFUSALS = {
    "slot_in_past": lazy_pgettext("no slot on a day", "Every slot of this day has started."),
    "station_closed": lazy_pgettext("no slot on a day", "The station is closed for the rest of this day."),
    "station_maintenance": lazy_pgettext("no slot on a day",
                                         "Maintenance takes the station's remaining open hours of this day."),
}


def refusal(err: DomainError, tz: tzinfo | None = None) -> str:
    """A refusal in the page's language: the service's own sentence in English, else by its code."""
    if is_english():
        return err.message
    template = REFUSALS.get(err.code)
    if template is None:
        return err.message
    text = str(template)
    until = err.details.get("until") if err.details else None
    if err.code == "driver_suspended" and until:
        when = datetime.fromisoformat(until)
        text += " " + gettext("You can book again from %(when)s.", when=local_datetime(when, tz))
    return text


# -- times and money --------------------------------------------------------------------


def _aware_local(at: datetime, tz: tzinfo | str | None) -> datetime:
    if isinstance(tz, str):
        tz = ZoneInfo(tz)
    return at.astimezone(tz) if tz is not None else at


def hhmm(at: datetime | None, tz: tzinfo | None = None) -> str:
    """Station wall time as HH:MM (24 h in both languages)."""
    return "" if at is None else _aware_local(at, tz).strftime("%H:%M")


def local_date(day: date) -> str:
    """A day as "11月22日 周日" / "Sun, Nov 22"."""
    return format_skeleton("MMMEd", day, locale=lang())


def local_datetime(at: datetime | None, tz: tzinfo | None = None) -> str:
    """A date and a time, station time: "11月22日 周日 14:30" / "Sun, Nov 22 14:30"."""
    if at is None:
        return ""
    local = _aware_local(at, tz)
    return f"{local_date(local.date())} {local:%H:%M}"


def day_word(day: date, today: date) -> str:
    """"today" / "tomorrow" / the date."""
    delta = (day - today).days
    if delta == 0:
        return gettext("today")
    if delta == 1:
        return gettext("tomorrow")
    return local_date(day)


def when(at: datetime | None, tz: tzinfo | None, now: datetime) -> str:
    """"14:30", "tomorrow 09:00" or a date and time, relative to ``now`` in the station's zone."""
    if at is None:
        return ""
    local, today = _aware_local(at, tz), _aware_local(now, tz).date()
    if local.date() == today:
        return f"{local:%H:%M}"
    return f"{day_word(local.date(), today)} {local:%H:%M}"


def slot_day(at: datetime | None, tz: tzinfo | None, now: datetime) -> str:
    """The day of ``at`` when it is not today in the station's zone: "明天 11月23日周一" / "tomorrow, Mon, Nov 23";
    "" for today (or no time)."""
    if at is None:
        return ""
    day, today = _aware_local(at, tz).date(), _aware_local(now, tz).date()
    if day == today:
        return ""
    if (day - today).days == 1:
        return gettext("tomorrow, %(date)s", date=local_date(day))
    return local_date(day)


def money(fen: int | None, currency: str = "CNY") -> str:
    """Integer fen as "¥12.34" in both languages (exact: no float on the way; English Babel would say "CN¥")."""
    if fen is None:
        return ""
    if currency == "CNY":
        return messages.yuan(fen)
    return format_currency(Decimal(fen) / 100, currency, locale=lang())


def distance(metres: int | None) -> str:
    if metres is None:
        return ""
    if metres < 1000:
        return gettext("%(m)d m", m=metres)
    return gettext("%(km)s km", km=f"{metres / 1000:.1f}")


def day_count(n: int) -> str:
    """"1 day" / "7 days" / "7 天"."""
    return ngettext("%(num)d day", "%(num)d days", n)


def sentence_gap() -> str:
    """What goes between two sentences: a space in English, nothing after Chinese "。"."""
    return " " if is_english() else ""


def minute_count(n: int) -> str:
    """"1 minute" / "10 minutes" / "10 分钟"."""
    return ngettext("%(num)d minute", "%(num)d minutes", n)


def suspension_rule(rules: dict) -> str:
    """"3 no-shows in 30 days suspend booking for 7 days." with a station's numbers (``_rule_numbers``)."""
    return ngettext("%(num)d no-show in %(days)s suspends booking for %(susp)s.",
                    "%(num)d no-shows in %(days)s suspend booking for %(susp)s.", rules["no_show_limit"],
                    days=day_count(rules["no_show_days"]), susp=day_count(rules["suspension_days"]))


def minutes(seconds: int | float | None) -> str:
    if seconds is None:
        return ""
    total = int(seconds)
    m, s = divmod(total, 60)
    if s and m < 60:
        return gettext("%(m)d min %(s)d s", m=m, s=s) if m else gettext("%(s)d s", s=s)
    return gettext("%(m)d min", m=m)


def long_date(day: date) -> str:
    return format_date(day, format="long", locale=lang())
