"""``chargeapp ocpp-password``: a charger's OCPP identity and Argon2id password in the registry."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from chargeapp.db import models as m
from tests.ocpp.conftest import set_password

pytestmark = pytest.mark.integration


def ocpp_row(session, code: str) -> m.OcppCharger:
    session.expire_all()
    return session.scalar(select(m.OcppCharger).join(m.Charger, m.Charger.id == m.OcppCharger.charger_id)
                          .where(m.Charger.code == code))


def test_a_generated_password_is_stored_only_as_an_argon2id_hash(runner, session, station):
    ocpp_id, password = set_password(runner, "s1", "F1")
    row = ocpp_row(session, "F1")
    assert (ocpp_id, len(password)) == ("s1.F1", 24)
    assert row.password_hash.startswith("$argon2id$") and password not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, password)


def test_a_new_password_keeps_the_id_and_the_gateways_counters(runner, session, station):
    set_password(runner, "s1", "F1", "--ocpp-id", "ACME-0042")
    row = ocpp_row(session, "F1")
    row.seq, row.last_transaction_id = 17, 4711
    session.commit()
    ocpp_id, password = set_password(runner, "s1", "F1")
    row = ocpp_row(session, "F1")
    assert (ocpp_id, row.seq, row.last_transaction_id) == ("ACME-0042", 17, 4711)
    assert PasswordHasher().verify(row.password_hash, password)


def test_a_given_password_comes_from_the_environment_and_must_be_16_to_40_characters(runner, session, station,
                                                                                      monkeypatch):
    monkeypatch.setenv("F1_KEY", "0123456789abcdef")
    r = runner.invoke(args=["ocpp-password", "s1", "F1", "--password-env", "F1_KEY"])
    assert r.exit_code == 0 and "0123456789abcdef" not in r.output, r.output
    assert PasswordHasher().verify(ocpp_row(session, "F1").password_hash, "0123456789abcdef")
    monkeypatch.setenv("F1_KEY", "too-short")
    assert runner.invoke(args=["ocpp-password", "s1", "F1", "--password-env", "F1_KEY"]).exit_code == 2


@pytest.mark.parametrize("args, message", [
    (["s1", "F9"], "No charger F9 at s1"),
    (["s1", "F2", "--ocpp-id", "has space"], "not 1-48 characters"),
    (["s1", "F2", "--ocpp-id", "s1.F1"], "already connects as s1.F1"),
])
def test_unknown_chargers_bad_ids_and_taken_ids_are_refused_with_a_message(runner, station, args, message):
    set_password(runner, "s1", "F1")
    r = runner.invoke(args=["ocpp-password", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
