"""OCPP-J 1.6 framing and the checks every CALL of a charger passes before its handler: pure, no I/O.

The ``ocpp`` library's own path is OCPP 2.0's in places, so the gateway routes
frames itself (``OcppSession.route_message``) through these functions:

- ``unpack``: a frame is ``[2, "<id>", "<Action>", {...}]`` (CALL),
  ``[3, "<id>", {...}]`` (CALLRESULT) or ``[4, "<id>", "<code>", "<text>", {...}]``
  (CALLERROR), the id a string of at most 36 characters (OCPP-J 1.6, 4.1.3). A
  CALL that breaks this is refused with a CALLERROR when its id can be echoed
  (a string or a number, sent back exactly as received, since the answer must
  carry "the exact same id"), else dropped: there is no id to answer to.
  Anything that is not a CALL is never answered (a bad CALLRESULT is dropped).
- ``check_call``: the action's JSON schema, then every ``timestamp`` in the
  payload, one rule for all actions (``translate.parse_ocpp_time``).
- Error codes are OCPP 1.6's (its Table 7 spelling): ``FormationViolation``
  and ``OccurenceConstraintViolation``, not OCPP 2.0's ``FormatViolation`` and
  ``OccurrenceConstraintViolation``.

A ``Refusal`` carries what a log line may show: the action, the message id and
a reason made of codes and JSON paths, never a value of the payload (id tags
are personal data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator

from ocpp_gateway import translate as tr

OCPP_VERSION = "1.6"
MAX_MESSAGE_ID = 36  # OCPP-J 1.6: UniqueId is string[36]

# OCPP 1.6 error codes (OCPP-J 1.6, Table 7)
FORMATION_VIOLATION = "FormationViolation"
PROTOCOL_ERROR = "ProtocolError"
PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
INTERNAL_ERROR = "InternalError"
ERROR_CODES_16 = frozenset({
    "NotImplemented", "NotSupported", INTERNAL_ERROR, PROTOCOL_ERROR, "SecurityError", FORMATION_VIOLATION,
    PROPERTY_CONSTRAINT_VIOLATION, OCCURENCE_CONSTRAINT_VIOLATION, TYPE_CONSTRAINT_VIOLATION, "GenericError",
})
_TO_16 = {"FormatViolation": FORMATION_VIOLATION, "OccurrenceConstraintViolation": OCCURENCE_CONSTRAINT_VIOLATION}

NO_ID = object()  # a refused frame without an id the gateway can answer to


def error_code_16(code: str) -> str:
    """An error code as OCPP 1.6 spells it (the library's 2.0 names mapped back); unknown codes become GenericError."""
    code = _TO_16.get(code, code)
    return code if code in ERROR_CODES_16 else "GenericError"


@dataclass
class Refusal(Exception):
    """A frame or CALL the gateway refuses: the OCPP 1.6 ``code``, a ``reason`` safe to log and to send back."""

    code: str
    reason: str
    message_id: Any = NO_ID
    action: str | None = None
    counter: str = field(default="refused_messages")

    def __post_init__(self):
        super().__init__(f"{self.code}: {self.reason}")

    @property
    def answerable(self) -> bool:
        return self.message_id is not NO_ID

    def call_error(self) -> str:
        """The CALLERROR frame that answers the refused CALL (only when ``answerable``)."""
        return json.dumps([MessageType.CallError, self.message_id, self.code, self.reason[:255], {}],
                          separators=(",", ":"))


def _echoable(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def unpack(raw: str | bytes) -> Call | CallResult | CallError:
    """The library's message object of a frame that follows OCPP-J 1.6; else raises ``Refusal``."""
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
        raise Refusal(FORMATION_VIOLATION, "not JSON", counter="refused_frames") from None
    if not isinstance(msg, list) or not msg or type(msg[0]) is not int:
        raise Refusal(FORMATION_VIOLATION, "not an OCPP-J frame (an array starting with a MessageTypeId)",
                      counter="refused_frames")
    kind = msg[0]
    unique_id = msg[1] if len(msg) > 1 else NO_ID
    if kind == MessageType.Call:
        answer_to = unique_id if _echoable(unique_id) else NO_ID
        action = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else None
        if not isinstance(unique_id, str):
            raise Refusal(FORMATION_VIOLATION, "the message id of a CALL must be a string", answer_to, action)
        if not 1 <= len(unique_id) <= MAX_MESSAGE_ID:
            raise Refusal(FORMATION_VIOLATION, f"the message id must be 1-{MAX_MESSAGE_ID} characters",
                          answer_to, action)
        if len(msg) < 4:
            raise Refusal(PROTOCOL_ERROR, "a CALL is [2, id, action, payload]: elements missing", answer_to, action)
        if len(msg) > 4:
            raise Refusal(FORMATION_VIOLATION, "a CALL is [2, id, action, payload]: too many elements",
                          answer_to, action)
        if action is None:
            raise Refusal(FORMATION_VIOLATION, "the action must be a string", answer_to)
        if not isinstance(msg[3], dict):
            raise Refusal(FORMATION_VIOLATION, "the payload must be a JSON object", answer_to, action)
        return Call(unique_id, action, msg[3])
    if kind == MessageType.CallResult:
        if len(msg) == 3 and isinstance(unique_id, str) and isinstance(msg[2], dict):
            return CallResult(unique_id, msg[2])
    elif kind == MessageType.CallError:
        if (len(msg) == 5 and isinstance(unique_id, str) and isinstance(msg[2], str) and isinstance(msg[3], str)
                and isinstance(msg[4], dict)):
            return CallError(unique_id, msg[2], msg[3], msg[4])
    else:
        raise Refusal(FORMATION_VIOLATION, f"unknown MessageTypeId {kind}", counter="refused_frames")
    # Not answered: an answer to an answer would start a loop.
    raise Refusal(FORMATION_VIOLATION, f"a malformed {'CALLRESULT' if kind == 3 else 'CALLERROR'}",
                  counter="refused_frames")


# --------------------------------------------------------------------------- a CALL's payload


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "payload"


def _schema_refusal(error: Any) -> tuple[str, str]:
    """(OCPP 1.6 code, reason) of a schema error (jsonschema's ValidationError): its path and rule, not the value."""
    where = _path(error.absolute_path)
    rule = error.validator
    if rule == "required":
        # jsonschema names the missing property in the message: "'idTag' is a required property"
        missing = str(error.message).split("'")[1] if str(error.message).count("'") >= 2 else "?"
        return PROTOCOL_ERROR, f"{_path([*error.absolute_path, missing])}: required"
    if rule in ("type", "maxLength"):
        return TYPE_CONSTRAINT_VIOLATION, f"{where}: {rule} {error.validator_value}"
    if rule == "additionalProperties":
        return FORMATION_VIOLATION, f"{where}: a property the action does not have"
    if rule == "enum":
        return FORMATION_VIOLATION, f"{where}: not one of the action's values"
    return FORMATION_VIOLATION, f"{where}: {rule} {error.validator_value}"


def _timestamps(value: Any, path: list) -> list[tuple[list, Any]]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "timestamp":
                found.append(([*path, key], item))
            else:
                found.extend(_timestamps(item, [*path, key]))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_timestamps(item, [*path, i]))
    return found


def check_timestamps(payload: dict[str, Any]) -> None:
    """Every ``timestamp`` of a CALL's (camelCase) payload is an OCPP dateTime, else PropertyConstraintViolation.

    One rule for every action: a StatusNotification, a StartTransaction, a
    MeterValues sampled instant or a StopTransaction's transactionData with a
    time that is not a date-time is refused as a whole, never partly dropped.
    """
    for path, value in _timestamps(payload, []):
        try:
            tr.parse_ocpp_time(value)
        except tr.UnusableMessage:
            raise Refusal(PROPERTY_CONSTRAINT_VIOLATION,
                          f"{_path(path)}: not an RFC 3339 date-time (like 2026-11-22T06:55:00Z)") from None


def check_call(action: str, payload: dict[str, Any]) -> None:
    """The checks of a charger's CALL before its handler runs: the action's 1.6 schema, then the timestamps.

    Raises ``Refusal`` (without message id and action: the caller adds them).
    """
    validator = get_validator(MessageType.Call, action, OCPP_VERSION)
    error = next(iter(validator.iter_errors(payload)), None)
    if error is not None:
        raise Refusal(*_schema_refusal(error))
    check_timestamps(payload)
