"""OCPP-J 1.6 framing and the checks of a charger's CALL (pure: no socket, no broker, no database)."""
from __future__ import annotations

import json

import pytest
from ocpp.messages import Call, CallError, CallResult

from ocpp_gateway import rpc

pytestmark = pytest.mark.unit

STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "2026-11-22T06:55:00Z"}


def refusal_of(frame) -> rpc.Refusal:
    with pytest.raises(rpc.Refusal) as caught:
        rpc.unpack(frame if isinstance(frame, str) else json.dumps(frame))
    return caught.value


def test_well_formed_frames_become_the_librarys_messages():
    assert isinstance(rpc.unpack(json.dumps([2, "m-1", "StatusNotification", STATUS])), Call)
    assert isinstance(rpc.unpack('[3,"m-1",{}]'), CallResult)
    assert isinstance(rpc.unpack('[4,"m-1","NotImplemented","",{}]'), CallError)


@pytest.mark.parametrize("message_id", [19223201, 1.5])
def test_a_call_with_a_numeric_message_id_is_refused_with_a_formation_violation_that_echoes_the_id(message_id):
    refusal = refusal_of([2, message_id, "Heartbeat", {}])
    assert (refusal.code, refusal.action, refusal.answerable) == ("FormationViolation", "Heartbeat", True)
    assert json.loads(refusal.call_error()) == [4, message_id, "FormationViolation",
                                                "the message id of a CALL must be a string", {}]


@pytest.mark.parametrize("frame, code", [
    ([2, "x" * 37, "Heartbeat", {}], "FormationViolation"),  # UniqueId is string[36]
    ([2, "", "Heartbeat", {}], "FormationViolation"),
    ([2, "m-1", "Heartbeat"], "ProtocolError"),  # incomplete
    ([2, "m-1", "Heartbeat", {}, {}], "FormationViolation"),
    ([2, "m-1", 7, {}], "FormationViolation"),
    ([2, "m-1", "Heartbeat", []], "FormationViolation"),
])
def test_a_malformed_call_with_a_string_id_is_answered_with_its_id(frame, code):
    refusal = refusal_of(frame)
    assert refusal.code == code and refusal.answerable
    assert json.loads(refusal.call_error())[:3] == [4, frame[1], code]


@pytest.mark.parametrize("frame", [
    "not json", "{}", "[]", '["2","m-1","Heartbeat",{}]', '[2.0,"m-1","Heartbeat",{}]', '[9,"m-1"]',
    '[2,null,"Heartbeat",{}]', '[2,{"id":1},"Heartbeat",{}]', '[2,true,"Heartbeat",{}]',
    '[3,5,{}]', '[3,"m-1"]', '[4,"m-1","NotImplemented"]',  # answers are never answered
])
def test_a_frame_without_an_id_to_answer_to_is_dropped(frame):
    refusal = refusal_of(frame)
    assert not refusal.answerable and refusal.code == "FormationViolation"


def test_error_codes_are_spelled_as_ocpp_1_6_spells_them():
    assert rpc.error_code_16("FormatViolation") == "FormationViolation"
    assert rpc.error_code_16("OccurrenceConstraintViolation") == "OccurenceConstraintViolation"
    assert rpc.error_code_16("PropertyConstraintViolation") == "PropertyConstraintViolation"
    assert rpc.error_code_16("RpcFrameworkError") == "GenericError"  # OCPP 2.0 only


@pytest.mark.parametrize("action, payload, code, reason", [
    ("StatusNotification", {**STATUS, "colour": "red"}, "FormationViolation", "a property the action does not have"),
    ("StatusNotification", {**STATUS, "status": "Sleeping"}, "FormationViolation", "status: not one of"),
    ("StatusNotification", {k: v for k, v in STATUS.items() if k != "status"}, "ProtocolError", "status: required"),
    ("StatusNotification", {**STATUS, "connectorId": "1"}, "TypeConstraintViolation", "connectorId: type integer"),
    ("Authorize", {"idTag": "SECRET-TAG-0123456789"}, "TypeConstraintViolation", "idTag: maxLength 20"),
])
def test_schema_errors_get_ocpp_1_6_codes_and_a_reason_without_the_value(action, payload, code, reason):
    with pytest.raises(rpc.Refusal) as caught:
        rpc.check_call(action, payload)
    assert caught.value.code == code and reason in caught.value.reason
    assert "SECRET" not in caught.value.reason and "Sleeping" not in caught.value.reason


@pytest.mark.parametrize("action, payload, path", [
    ("StatusNotification", {**STATUS, "timestamp": "22/11/2026 14:55"}, "timestamp"),
    ("StartTransaction", {"connectorId": 1, "idTag": "APP-1", "meterStart": 0, "timestamp": "2026-11-22"},
     "timestamp"),
    ("MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [
        {"timestamp": "2026-11-22T06:55:00Z", "sampledValue": [{"value": "1"}]},
        {"timestamp": "2026-11-22 06:56:00", "sampledValue": [{"value": "2"}]}]}, "meterValue[1].timestamp"),
    ("StopTransaction", {"meterStop": 5, "timestamp": "2026-11-22T06:55:00Z", "transactionId": 7,
                         "transactionData": [{"timestamp": "soon", "sampledValue": [{"value": "1"}]}]},
     "transactionData[0].timestamp"),
])
def test_a_time_that_is_not_one_gets_the_same_answer_in_every_action(action, payload, path):
    with pytest.raises(rpc.Refusal) as caught:
        rpc.check_call(action, payload)
    assert caught.value.code == "PropertyConstraintViolation"
    assert caught.value.reason == f"{path}: not an RFC 3339 date-time (like 2026-11-22T06:55:00Z)"


def test_a_good_call_passes():
    rpc.check_call("StatusNotification", STATUS)
    rpc.check_call("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-11-22T14:55:00.123+08:00", "sampledValue": [{"value": "1", "unit": "kWh"}]}]})
