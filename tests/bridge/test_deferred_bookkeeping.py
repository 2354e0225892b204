"""Deferred bookkeeping: a batch writes what applying its messages one by one writes.

The worker applies a message newer than its device's sequence without a duplicate
check and defers its applied_messages row, its sequence row and (for a sample of a
known session) its meter reading to the commit (``mqtt_bridge.handler``,
``ApplyContext.defer``). The reference is the worker's one-by-one mode
(``defer=False``: each message in its own SAVEPOINT and transaction, every write at
once), the path used before. Same messages, same order, fresh database each: every
table must end up the same, row for row, ids included.
"""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from chargeapp.db import db
from chargeapp.db import models as m
from mqtt_bridge.handler import APPLIED, DUPLICATE, ApplyContext, apply_message
from mqtt_bridge.measure import workload
from mqtt_bridge.worker import Worker, _device_of
from tests.bridge.wire import charger, raw, rx
from tests.conftest import T0
from tests.factories import make_station

pytestmark = pytest.mark.integration

RECEIVED = T0 + timedelta(minutes=1)
NOW = T0 + timedelta(minutes=1, seconds=1)


def _stream(seed: int, n: int = 700) -> list[tuple[str, bytes]]:
    """A busy station's messages with redeliveries and late arrivals mixed in, as a broker delivers them."""
    msgs = workload("s1", ["F1", "F2", "F3", "S01"], ["D1", "D2"], ["G-in", "G-out"], n, T0, seed=seed,
                    transaction_share=0.05)
    rnd = random.Random(seed)
    out = list(msgs)
    for _ in range(len(msgs) // 25):  # a message held back: it arrives after later ones of its device
        i = rnd.randrange(len(out) - 1)
        out.insert(min(len(out), i + rnd.randint(2, 120)), out.pop(i))
    for i in rnd.sample(range(len(msgs)), len(msgs) // 20):  # a redelivery, soon or much later
        out.insert(min(len(out), i + rnd.choice([1, 5, 60, 400])), msgs[i])
    out.append(("stations/s1/chargers/F1/meter", b'{"not": "a sample"}'))  # refused on the way
    out.append(("stations/s1/chargers/F9/status/1", b"{}"))
    return out


def _batches(stream: list[tuple[str, bytes]], size: int) -> list[list]:
    """Batches as the worker applies them: grouped by device, arrival order within a device."""
    out = []
    for i in range(0, len(stream), size):
        batch = [raw(topic, payload, RECEIVED) for topic, payload in stream[i:i + size]]
        out.append(sorted(batch, key=lambda r: _device_of(r.topic)))
    return out


def _dump() -> dict:
    """Every table's rows in primary key order; applied_messages without its id (on PostgreSQL a duplicate's
    refused insert, in the one-by-one reference, uses up a sequence number)."""
    with db.engine.connect() as conn:
        out = {}
        for table in db.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
            skip = {"id"} if table.name == "applied_messages" else set()
            out[table.name] = [tuple(v for k, v in row.items() if k not in skip) for row in rows]
        return out


def _run(app, clock, stream, size: int, one_by_one: bool) -> tuple[list, dict]:
    with app.app_context():
        db.session.remove()
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        else:
            db.drop_all()
        db.create_all()
        make_station(db.session, clock.now(), fast=3, slow=1)
        db.session.commit()
        worker = Worker(app, clock=clock, ack=lambda r: True)
        outcomes = []
        for batch in _batches(stream, size):
            worker._one_by_one = one_by_one
            outcomes += [(o.status, o.reason, o.gap, o.filled) for o in worker.process(batch)]
        db.session.remove()
        return outcomes, _dump()


@pytest.mark.parametrize("seed", [3, 11])
def test_batches_write_what_one_by_one_writes(app, clock, seed):
    clock.set(NOW)
    stream = _stream(seed)
    reference, before = _run(app, clock, stream, 100, one_by_one=True)
    outcomes, after = _run(app, clock, stream, 100, one_by_one=False)
    assert outcomes == reference
    statuses = [s for s, *_ in outcomes]
    assert statuses.count(DUPLICATE) >= len(stream) // 25  # redeliveries were there, and were caught
    assert any(filled for *_, filled in outcomes)  # late messages filled counted gaps
    assert len(after["meter_readings"]) > 300 and len(after["applied_messages"]) > 600
    for table in before:
        assert after[table] == before[table], table


def test_a_batch_writes_its_bookkeeping_once_per_batch_not_per_message(app, session, station):
    """200 samples of two sessions: one INSERT of applied_messages, one of meter_readings, one UPDATE per device."""
    f1, f2 = charger("F1"), charger("F2")
    first = [f1.start(1, meter_wh=1000), f2.start(2, meter_wh=1000)]
    ctx = ApplyContext()
    for msg in first:
        apply_message(session, rx(msg), NOW, context=ctx)
    session.commit()
    samples = [c.meter(tx, energy_wh=1000 + i, ts=T0 + timedelta(seconds=i))
               for i in range(100) for c, tx in ((f1, 1), (f2, 2))]
    statements: list[str] = []
    listener = lambda conn, cursor, sql, params, context, many: statements.append(sql.split()[0] + " " + sql)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        ctx = ApplyContext()
        outcomes = [apply_message(session, rx(msg), NOW, context=ctx) for msg in samples]
        session.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert {o.status for o in outcomes} == {APPLIED}
    writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "SAVEPOINT")]
    assert sum("applied_messages" in s for s in writes) == 1
    assert sum("meter_readings" in s for s in writes) == 1
    assert sum("device_sequences" in s for s in writes) == 2
    assert not any(s.startswith("SAVEPOINT") for s in writes)
    assert session.scalar(select(db.func.count()).select_from(m.MeterReading)) == 200
    seq = session.get(m.DeviceSequence, "charger:s1/F1")
    assert seq.last_seq == samples[-2].seq and seq.missing == 0


def test_a_batch_rolled_back_writes_nothing_and_applies_again(session, station):
    f1 = charger("F1")
    ctx = ApplyContext()
    for msg in (f1.start(1, meter_wh=1000), f1.meter(1, energy_wh=1200, ts=T0 + timedelta(seconds=5))):
        assert apply_message(session, rx(msg), NOW, context=ctx).status == APPLIED
    session.commit()
    late = f1.meter(1, energy_wh=1300, ts=T0 + timedelta(seconds=10))
    ctx = ApplyContext()
    assert apply_message(session, rx(late), NOW, context=ctx).status == APPLIED
    session.rollback()  # the batch failed: nothing of it stays, the broker redelivers it
    assert session.scalar(select(db.func.count()).select_from(m.MeterReading)) == 1
    assert session.get(m.DeviceSequence, "charger:s1/F1").last_seq == 2
    ctx = ApplyContext()
    assert apply_message(session, rx(late), NOW, context=ctx).status == APPLIED
    assert apply_message(session, rx(late), NOW, context=ctx).status == DUPLICATE
    session.commit()
    assert session.scalar(select(db.func.count()).select_from(m.MeterReading)) == 2
    assert session.get(m.DeviceSequence, "charger:s1/F1").last_seq == 3
    assert apply_message(session, rx(late), NOW).status == DUPLICATE  # a redelivery after the commit
