"""What the services record as a code and its parameters, rendered in the reader's language.

The services store (or build) what happened as a ``code`` and ``params`` next to an English
sentence kept for the API's ``message`` field: notifications (``m.Notification.code/params``),
the manager's attention items (``services.manage.attention``) and the lines of a receipt's
explanation (``m.Receipt.explanation_lines``). This module is the one place that turns them into
text, for the pages (the page's language) and the API (the request's ``Accept-Language``, Chinese
first). Its shape is that of ``pages.i18n.REFUSALS``: one English msgid per code, translated in the
page catalogs (``python -m chargeapp.translations.update zh.json``).

Parameters are language-neutral: station-local times already written as text ("14:30",
"12-08 14:30"), money as integer fen (a name ending ``_fen``, or ``before``/``after``/``delta``
of a money change), energy in Wh, codes of chargers and stations as they are. Money is "¥27.11"
in both languages (never "CN¥"). A code this module does not know, or params that do not fit
its template, give the stored English text: an old row is never lost, only untranslated.
"""
from __future__ import annotations

from flask import after_this_request, g, request
from flask_babel import force_locale, gettext, lazy_gettext as _l, lazy_pgettext

DEFAULT_LANGUAGE = "zh_Hans"


# -- notifications (m.Notification.code) ---------------------------------------------------------

NOTIFICATIONS = {
    "booked": _l("Booked %(charger)s (%(level)s) at %(station)s, %(start)s-%(end)s."),
    "cancelled": _l("Booking cancelled, free of charge."),
    "no_show_cancelled_late": _l("Cancelled after the slot started: counted as a no-show."),
    "no_show": _l("No check-in within %(minutes)s minutes of the slot: the booking is a no-show and the "
                  "charger was released."),
    "suspended": _l("Booking suspended until %(until)s after repeated no-shows. Existing bookings stand."),
    "suspension_lifted": _l("Your booking suspension was lifted."),
    "delayed": _l("No fast charger is free yet for your %(slot)s slot: we will hold the first one that frees "
                  "up and tell you which."),
    "delayed_hold_refused": _l("The held charger answered '%(answer)s'; we will hold the first fast charger "
                               "that frees up."),
    "held": _l("%(where)s is held for you until %(deadline)s."),
    "held_after_wait": _l("%(where)s is now held for you. Check in by %(deadline)s."),
    "held_after_delay": _l("%(where)s is now held for you, %(delay)s min after your slot started. "
                           "Check in by %(deadline)s."),
    "moved": _l("Your charger was busy or out of service: moved to %(where)s, held until %(deadline)s."),
    "moved_charger_down": _l("%(from)s is out of service: your %(slot)s slot moved to %(charger)s."),
    "disrupted_charger_down": _l("%(from)s is out of service and no other fast charger is free for your "
                                 "%(slot)s slot: the booking is cancelled at no cost. Please book again."),
    "disrupted_maintenance": _l("%(station)s is closed for maintenance during your %(start)s-%(end)s slot: "
                                "the booking is cancelled at no cost. Please book another slot."),
    "no_show_reversed": _l("Your charger reported a start inside the check-in window: the no-show is "
                           "withdrawn."),
    "checked_in": _l("Checked in on %(charger)s."),
    "receipt_corrected": _l("Receipt #%(receipt)s was corrected: %(changes)s."),
}

# A charger's answer to reserve_now (services.booking.hold_refused).
CHARGER_ANSWERS = {
    "Occupied": _l("Occupied"),
    "Faulted": _l("Faulted"),
    "Rejected": _l("Rejected"),
    "Unavailable": _l("Unavailable"),
}

# One change of a correction (services.receipts.changes), joined with "; ".
CHANGES = {
    "energy": _l("energy %(before)s -> %(after)s"),
    "energy_fen": _l("energy %(before)s -> %(after)s (%(delta)s)"),
    "service_fen": _l("service fee %(before)s -> %(after)s (%(delta)s)"),
    "idle_fen": _l("idle fee %(before)s -> %(after)s (%(delta)s)"),
    "parking_fen": _l("parking %(before)s -> %(after)s (%(delta)s)"),
    "total": _l("total %(before)s -> %(after)s"),
}

# -- the manager's attention list (services.manage.attention: code = kind) -------------------------

ATTENTION = {
    "charger_faulted": _l("%(charger)s connector %(connector)s is Faulted (%(error_code)s)."),
    "charger_unavailable": _l("%(charger)s connector %(connector)s is Unavailable (%(error_code)s)."),
    "charger_offline": _l("%(charger)s is offline."),
    "sensor_offline": _l("Door sensor %(sensor)s is offline: its zones are uncertain."),
    "gate_offline": _l("Gate %(gate)s is offline: plates are not being read."),
    "door_left_open": _l("Door %(door)s has been open for %(minutes)s min."),
    "session_stuck": _l("Session %(session)s on %(charger)s open for %(hours)s h (since %(since)s)."),
    "messages_missing": _l("%(device)s: %(missing)s message(s) never arrived; meter and door totals are right "
                           "again from its next message, a status change or transaction in the gap may be "
                           "missing."),
    "hold_unacknowledged": _l("Hold for booking %(booking)s on %(charger)s not acknowledged (%(status)s, "
                              "%(attempts)s attempt(s))."),
    "command_failed": _l("%(command)s to %(charger)s failed (%(result)s)."),
    "dead_letters": _l("%(count)s message(s) dead-lettered in the last 24 h."),
}

# The state of a command in the outbox (hold_unacknowledged).
COMMAND_STATUS = {"pending": _l("not sent yet"), "sent": _l("sent, no answer")}


# -- a receipt's explanation (m.Receipt.explanation_lines), one line each -----------------------------

RECEIPT_LINES = {
    # a charging session (services.receipts._charging_lines)
    "charging_session": _l("Charger %(charger)s from %(from)s to %(to)s: %(energy_wh)s."),
    "charging_energy": _l("Energy: %(bands)s: %(energy_fen)s."),
    "charging_service": _l("Service: %(energy_wh)s at %(price)s: %(service_fen)s."),
    "idle_slow_charger": _l("No idle fee on slow chargers."),
    "idle_no_charging": _l("No Charging time recorded: no idle fee."),
    "idle_not_reported": _l("Charging ended at %(charging_end)s; the connector has not reported Available yet: "
                            "no idle fee charged."),
    "idle_within_grace": _l("Idle %(idle_seconds)s from %(from)s until %(until)s (%(grace_seconds)s free): "
                            "no idle fee."),
    "idle_billed": _l("Idle %(idle_seconds)s from %(from)s until %(until)s (%(grace_seconds)s free): "
                      "%(minutes)s min at %(rate_fen)s/min = %(amount_fen)s."),
    "idle_capped": _l("Idle %(idle_seconds)s from %(from)s until %(until)s (%(grace_seconds)s free): "
                      "%(minutes)s min at %(rate_fen)s/min = %(amount_fen)s, capped at %(fee_fen)s."),
    "total": _l("Total %(total_fen)s."),
    # a parking stay (domain.parking.explanation_lines)
    "parking_qualified": _l("Charged %(charged_seconds)s (%(needed_seconds)s needed): first %(free_seconds)s "
                            "free, until %(until)s."),
    "parking_not_qualified": _l("Charged %(charged_seconds)s (%(needed_seconds)s needed): no free parking."),
    "parking_block_after_free": _l("1 block of %(block_seconds)s after that: %(fee_fen)s."),
    "parking_blocks_after_free": _l("%(blocks)s blocks of %(block_seconds)s after that: %(fee_fen)s."),
    "parking_block_from_entry": _l("1 block of %(block_seconds)s from entry at %(entry)s: %(fee_fen)s."),
    "parking_blocks_from_entry": _l("%(blocks)s blocks of %(block_seconds)s from entry at %(entry)s: "
                                    "%(fee_fen)s."),
    "parking_left_in_free_time": _l("Left within the free time: %(fee_fen)s."),
    "parking_no_time": _l("No time parked: %(fee_fen)s."),
    "parking_daily_cap": _l("Daily cap on %(day)s: %(blocks)s blocks capped at %(cap_fen)s."),
    # a stay still open (services.receipts.parking_status: the API's explanation_text)
    "parking_status_free": _l("Charged %(charged_seconds)s (%(needed_seconds)s needed): parking free until "
                              "%(until)s."),
    "parking_status_not_yet": _l("Charged %(charged_seconds)s so far (%(needed_seconds)s needed): charge "
                                 "%(still_needed_seconds)s more for free parking until %(until)s."),
    "parking_status_fee": _l("Leaving now costs %(fee_fen)s."),
    # corrections (services.receipts._recheck, _manager_correction)
    "correction_recheck": _l("Correction of receipt #%(receipt)s after late telemetry: %(changes)s."),
    "correction_kept": _l("Kept as set by a manager: %(components)s."),
    "correction_now": _l("Now:"),
    "correction_waived": _l("Correction of receipt #%(receipt)s: %(components)s waived by the station manager: "
                            "%(changes)s. Reason: %(reason)s"),
    "correction_corrected": _l("Correction of receipt #%(receipt)s: %(components)s corrected by the station "
                               "manager: %(changes)s. Reason: %(reason)s"),
}

# A tariff's time-of-use band (charging_energy's bands).
BANDS = {"peak": lazy_pgettext("tariff band", "peak"), "flat": lazy_pgettext("tariff band", "flat"),
         "valley": lazy_pgettext("tariff band", "valley")}
BAND_LINE = _l("%(energy)s %(band)s at %(price)s")

# A receipt component (correction_kept, correction_waived/corrected).
COMPONENTS = {"energy_fen": lazy_pgettext("receipt component", "energy"),
              "service_fen": lazy_pgettext("receipt component", "service fee"),
              "idle_fen": lazy_pgettext("receipt component", "idle fee"),
              "parking_fen": lazy_pgettext("receipt component", "parking")}


# -- numbers ----------------------------------------------------------------------------------------


def yuan(fen: int | None) -> str:
    """Integer fen as "¥27.11" (both languages; "-¥1.00" below zero; exact, no float)."""
    if fen is None:
        return ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{'-' if fen < 0 else ''}¥{whole}.{cents:02d}"


def signed_yuan(fen: int) -> str:
    """A change of money: "+¥1.00", "-¥1.00", "¥0.00"."""
    return ("+" if fen > 0 else "") + yuan(fen)


def per_kwh(price: int) -> str:
    """A price in 1/10,000 CNY per kWh as "¥1.0755/kWh"."""
    return f"¥{price // 10_000}.{price % 10_000:04d}/kWh"


def duration(seconds: int) -> str:
    """Seconds as "17 min" / "14 min 59 s" ("17 分钟" / "14 分 59 秒"), as the services' format_duration."""
    m, s = divmod(int(seconds), 60)
    return gettext("%(m)d min %(s)d s", m=m, s=s) if s else gettext("%(m)d min", m=m)


def kwh(wh: int) -> str:
    """Wh as "20.000 kWh"."""
    whole, rest = divmod(abs(int(wh)), 1000)
    return f"{'-' if wh < 0 else ''}{whole}.{rest:03d} kWh"


# -- rendering ----------------------------------------------------------------------------------------


def _change(change: dict) -> str:
    what = change["what"]
    if what == "energy":
        before, after = kwh(change["before"]), kwh(change["after"])
    else:
        before, after = yuan(change["before"]), yuan(change["after"])
    return str(CHANGES[what]) % {"before": before, "after": after,
                                 "delta": signed_yuan(change["after"] - change["before"])}


def _band(item: dict) -> str:
    return str(BAND_LINE) % {"energy": kwh(item["wh"]), "band": str(BANDS.get(item["band"], item["band"])),
                             "price": per_kwh(item["price"])}


def _values(code: str, params: dict) -> dict:
    """The params as text for a template: money, energy, durations, answers and lists written out."""
    values = {}
    for name, value in params.items():
        if name.endswith("_fen"):
            value = yuan(value)
        elif name.endswith("_wh"):
            value = kwh(value)
        elif name.endswith("_seconds"):
            value = duration(value)
        elif name == "price":
            value = per_kwh(value)
        elif name == "bands":
            value = gettext(", ").join(_band(b) for b in value) if value else kwh(0)
        elif name == "components":
            value = gettext(", ").join(str(COMPONENTS.get(c, c)) for c in value)
        elif name == "changes":
            value = gettext("; ").join(_change(c) for c in value)
        elif name == "answer":
            value = str(CHARGER_ANSWERS.get(value, value))
        elif name == "status" and code == "hold_unacknowledged":
            value = str(COMMAND_STATUS.get(value, value))
        elif name == "result" and value is None:
            value = gettext("no answer")
        elif name == "level" and not value:
            value = "-"
        values[name] = value
    return values


def _render(catalog: dict, code: str | None, params: dict | None, stored: str) -> str:
    template = catalog.get(code) if code else None
    if template is None:
        return stored
    try:
        return str(template) % _values(code, params or {})
    except (KeyError, TypeError, ValueError):
        return stored  # params that do not fit (a row written by another version): the stored sentence


def notification_lang(n, page_lang: str) -> str:
    """The HTML ``lang`` of ``notification_text(n)``: the page's, or "en" for a sentence shown as stored."""
    return page_lang if getattr(n, "code", None) in NOTIFICATIONS else "en"


def attention_lang(item: dict, page_lang: str) -> str:
    return page_lang if item.get("code") in ATTENTION else "en"


def notification_text(n) -> str:
    """A notification (anything with ``code``, ``params``, ``message``) in the current language."""
    return _render(NOTIFICATIONS, getattr(n, "code", None), getattr(n, "params", None), n.message)


def receipt_lines(r) -> list[str]:
    """A receipt's explanation in the current language, one string per line; the stored English as one line
    when the receipt has no lines (an old receipt that could not be read) or a line cannot be rendered."""
    lines = r.get("explanation_lines") if isinstance(r, dict) else getattr(r, "explanation_lines", None)
    stored = r.get("explanation", "") if isinstance(r, dict) else r.explanation
    if not lines:
        return [stored] if stored else []
    out = [_render(RECEIPT_LINES, line.get("code"), line.get("params"), None) for line in lines]
    return [stored] if any(text is None for text in out) else out


def receipt_translated(r) -> bool:
    """Whether ``receipt_lines(r)`` is in the current language (else the stored English)."""
    lines = r.get("explanation_lines") if isinstance(r, dict) else getattr(r, "explanation_lines", None)
    return bool(lines) and all(line.get("code") in RECEIPT_LINES for line in lines)


def receipt_text(r) -> str:
    """A receipt's explanation in the current language, as one paragraph (the API's explanation_text)."""
    return " ".join(receipt_lines(r))


def attention_text(item: dict) -> str:
    """An attention item of ``services.manage.attention`` in the current language."""
    return _render(ATTENTION, item.get("code"), item.get("params"), item["message"])


# -- the API's language ---------------------------------------------------------------------------------


def api_language() -> str:
    """The language of an API response from ``Accept-Language``: the first of zh (any region or script)
    or en in the client's order of preference; Chinese when neither (or no header) is given."""
    for value, _quality in request.accept_languages:
        tag = value.lower()
        if tag.startswith("zh") or tag == "*":
            return "zh_Hans"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


def say_content_language(lang: str) -> None:
    """Answer this API request with ``Content-Language`` (zh-Hans or en)."""
    tag = "zh-Hans" if lang.startswith("zh") else "en"
    if g.get("content_language_said"):
        return
    g.content_language_said = True

    @after_this_request
    def _header(response):
        response.headers["Content-Language"] = tag
        return response


def in_language(lang: str, render, *args):
    """``render(*args)`` with ``lang`` as the locale (the API, whatever the session's page language)."""
    with force_locale(lang):
        return render(*args)
