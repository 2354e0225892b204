"""The OCPP 1.6J central system endpoint: WebSocket server, authentication, one ``OcppSession`` per charger.

Thin I/O around ``translate`` (pure) and ``store`` (database):

- Handshake: ``ws(s)://host/ocpp/<chargePointId>``, subprotocol ``ocpp1.6``, HTTP
  Basic authentication with the chargePointId as username and the charger's
  password from the registry (OCPP 1.6 security profile 1; profile 2 with TLS).
  Anything else is refused before the WebSocket opens: 404 for another path,
  400 without the subprotocol, 401 (with ``WWW-Authenticate``) for an unknown
  charger, a wrong password or a username that is not the chargePointId.
- Frames are routed by ``OcppSession.route_message`` through ``rpc`` (not the
  library's path): every CALL passes the same checks (frame, schema, timestamps)
  and every refusal is an OCPP 1.6 CALLERROR, logged once at WARNING without the payload.
- What a charger says becomes contract messages with the charger's next boot
  and seq; the gateway answers the charger only after the broker acknowledged
  them (so a lost answer makes the charger repeat, never lose, a message).
  Messages of one charger are stamped and handed to paho under one lock, so the
  bridge receives them in seq order.
- Commands on the charger's command topics become OCPP CALLs; the answer becomes
  a command result. A command for a charger that is not connected is not
  answered: the bridge retries it (same request_id) and reports it failed after
  its retries, as for an MQTT charger that is offline. A retry of a command
  already answered gets the same answer again without a second CALL.
- ``online``: ``true`` retained when a charger's WebSocket opens, ``false`` when it
  closes; at start the gateway says ``false`` for every registry charger it
  speaks for, and at a clean stop for every charger still connected.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
import ssl
import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, MessageType, validate_payload
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chargeapp import telemetry as t
from chargeapp.services import registry
from mqtt_bridge.client import parse_mqtt_url
from ocpp_gateway import rpc
from ocpp_gateway import store as st
from ocpp_gateway import translate as tr
from ocpp_gateway.mqtt import MqttLink

log = logging.getLogger("ocpp_gateway")

SUBPROTOCOL = "ocpp1.6"
PATH_PREFIX = "/ocpp/"
REALM = "chargeapp OCPP"
ANSWERED_COMMANDS_KEPT = 256  # per charger: answers a retried request_id gets again


@dataclass(frozen=True)
class GatewayOptions:
    """How the gateway listens and where it publishes."""

    host: str = "127.0.0.1"
    port: int = 9000  # 0: any free port (tests read Gateway.port)
    mqtt_url: str | None = None
    client_id: str = "chargeapp-ocpp-gateway"
    certfile: str | None = None  # wss:// (security profile 2) when set
    keyfile: str | None = None
    heartbeat_seconds: int = 300
    call_timeout: float = 30.0  # seconds a charger has to answer a CALL
    puback_timeout: float = 10.0  # seconds the broker has to acknowledge before the charger gets an error
    verify_concurrency: int = 4  # Argon2 checks at once (each takes its memory cost)


class Counters:
    """What the gateway did, for logs and tests: a plain counter per event name."""

    def __init__(self):
        self._values: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class OcppSession(ChargePoint):
    """One connected charger: OCPP handlers that translate to the contract, and the commands sent to it."""

    def __init__(self, gateway: "Gateway", identity: registry.ChargerIdentity, connection: ServerConnection):
        super().__init__(identity.ocpp_id, connection, response_timeout=gateway.options.call_timeout)
        self.gw = gateway
        self.identity = identity
        self.address = tr.ChargerAddress(identity.station, identity.charger)
        self.rated_w = tr.rated_power_w(identity.max_power_kw)  # the meter register's plausibility bound
        self.readings: dict[int, tr.EnergyReading] = {}  # transaction id -> latest register reading
        self.tasks: set[asyncio.Task] = set()

    # -- OCPP-J frames: one path for every CALL and every refusal (rpc.py)

    async def route_message(self, raw_msg):
        """A frame from the charger: a CALL is checked and handled, an answer goes to the CALL waiting for it."""
        try:
            msg = rpc.unpack(raw_msg)
        except rpc.Refusal as refusal:
            await self._refuse(refusal)
            return
        if msg.message_type_id != MessageType.Call:
            self._response_queue.put_nowait(msg)
            return
        try:
            await self._handle_call(msg)
        except rpc.Refusal as refusal:
            refusal.message_id, refusal.action = msg.unique_id, msg.action
            await self._refuse(refusal)

    async def _refuse(self, refusal: rpc.Refusal) -> None:
        """Count and log a refused frame or CALL (action, message id, reason: no payload), answer it if it can be."""
        self.gw.counters.add(refusal.counter)
        message_id = repr(refusal.message_id)[:40] if refusal.answerable else "without an id"
        log.warning("%s: refused %s %s: %s", self.identity, refusal.action or "a frame", message_id, refusal)
        if refusal.answerable:
            await self._send(refusal.call_error())

    async def _handle_call(self, msg: Call) -> None:
        """The library's ``_handle_call`` with the gateway's checks (schema, timestamps) and 1.6 error codes.

        Everything refused raises ``rpc.Refusal``; the ``ocpp`` library's own
        path would log the whole payload (id tags) at ERROR and answer schema
        errors with OCPP 2.0's ``FormatViolation``. No ``@after`` hooks.
        """
        handler = self.route_map.get(msg.action, {}).get("_on_action")
        if handler is None:
            known = msg.action in {a.value for a in Action}
            raise rpc.Refusal("NotImplemented" if known else "NotSupported",
                              f"{'not implemented' if known else 'not an OCPP 1.6 action'}: {msg.action[:40]}")
        rpc.check_call(msg.action, msg.payload)
        try:
            response = handler(**camel_to_snake_case(msg.payload))
            if asyncio.iscoroutine(response):
                response = await response
        except (t.BadMessage, tr.UnusableMessage) as exc:
            # What the contract cannot carry (an id tag with control characters, a register that cannot be true...)
            raise rpc.Refusal(rpc.PROPERTY_CONSTRAINT_VIOLATION, str(exc)[:200]) from None
        except OCPPError as exc:
            raise rpc.Refusal(rpc.error_code_16(exc.code), str(exc.description)[:200]) from None
        except TimeoutError:
            # No PUBACK in time: the charger sends it again later (OCPP retries transaction messages).
            raise rpc.Refusal(rpc.INTERNAL_ERROR, "not acknowledged by the message broker in time: try again",
                              counter="unacknowledged_calls") from None
        except Exception:
            log.exception("%s: %s %r failed", self.identity, msg.action, msg.unique_id)
            raise rpc.Refusal(rpc.INTERNAL_ERROR, "an unexpected error occurred", counter="failed_calls") from None
        result = msg.create_call_result(snake_to_camel_case(remove_nones(serialize_as_dict(response))))
        try:
            await validate_payload(result, self._ocpp_version)
        except OCPPError:  # the gateway's own answer is wrong: a bug, not the charger's fault
            log.exception("%s: the answer to %s %r breaks the schema", self.identity, msg.action, msg.unique_id)
            raise rpc.Refusal(rpc.INTERNAL_ERROR, "an unexpected error occurred", counter="failed_calls") from None
        await self._send(result.to_json())

    # -- charger -> contract

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **info: Any):
        async with self.gw.lock_of(self.identity):
            info = {"charge_point_vendor": charge_point_vendor, "charge_point_model": charge_point_model, **info}
            boot = await self.gw.store.run(st.record_boot, self.identity.charger_id, info, self.gw.now())
        log.info("%s booted (%s %s), boot %d", self.identity, charge_point_vendor, charge_point_model, boot)
        return call_result.BootNotification(current_time=tr.ocpp_time(self.gw.now()),
                                            interval=self.gw.options.heartbeat_seconds,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    async def on_heartbeat(self):
        return call_result.Heartbeat(current_time=tr.ocpp_time(self.gw.now()))

    @on(Action.status_notification)
    async def on_status_notification(self, **payload: Any):
        await self.gw.emit(self.identity, [tr.status_draft(self.address, payload, self.gw.now())])
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str):
        driver = await self.gw.store.run(st.driver_of_tag, id_tag)
        self.gw.counters.add(f"authorize_{'accepted' if driver is not None else 'invalid'}")
        return call_result.Authorize(id_tag_info=tr.id_tag_info(driver))

    @on(Action.start_transaction)
    async def on_start_transaction(self, **payload: Any):
        t.format_message(tr.start_draft(self.address, payload, 1))  # refuse what the contract cannot carry before an id is spent
        record = await self.gw.store.run(st.start_transaction, self.identity.charger_id, payload)
        if record.start_published:
            self.gw.counters.add("replays")
        else:
            await self.gw.emit(self.identity, [tr.start_draft(self.address, payload, record.transaction_id)])
            await self.gw.store.run(st.mark_published, self.identity.charger_id, record.transaction_id, "start")
        self.readings.setdefault(record.transaction_id, record.start_reading)
        driver = await self.gw.store.run(st.driver_of_tag, payload["id_tag"])
        return call_result.StartTransaction(transaction_id=record.transaction_id, id_tag_info=tr.id_tag_info(driver))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, transaction_id: int | None = None):
        if transaction_id is not None:
            record = await self.gw.store.run(st.transaction, self.identity.charger_id, transaction_id)
            if record is None:
                # Published, the bridge would open a session for it (meter_without_start) that no start ever fills.
                self.gw.counters.add("meter_values_of_unknown_transactions")
                raise tr.UnusableMessage("unknown_transaction",
                                         f"transaction {transaction_id} was not assigned by this central system")
        else:
            record = await self.gw.store.run(st.open_transaction, self.identity.charger_id, connector_id)
            if record is None:
                self.gw.counters.add("meter_values_outside_transaction")  # the contract has no such samples
                return call_result.MeterValues()
        drafts, latest = self._meter_drafts(connector_id, record.transaction_id, meter_value, record)
        await self._publish_readings(record.transaction_id, drafts, latest)
        return call_result.MeterValues()

    def _meter_drafts(self, connector: int, tx: int, meter_value: list, record: st.TransactionRecord | None,
                      ) -> tuple[list[t.MeterSample], tr.EnergyReading | None]:
        """The samples of a MeterValues (or a stop's transactionData); UnusableMessage refuses the whole message."""
        start = record.start_reading if record is not None else None
        previous = self.readings.get(tx) or start
        try:
            drafts, latest, skipped = tr.meter_drafts(self.address, connector, tx, meter_value, previous, start=start,
                                                      rated_w=self.rated_w)
        except tr.UnusableMessage as exc:
            self.gw.counters.add(f"meter_values_refused_{exc.reason}")
            raise
        if skipped:
            self.gw.counters.add("meter_instants_skipped", skipped)
        return drafts, latest

    async def _publish_readings(self, tx: int, drafts: list[t.MeterSample], latest: tr.EnergyReading | None) -> None:
        if drafts:
            await self.gw.emit(self.identity, drafts)
        if latest is not None:
            self.readings[tx] = latest

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, **payload: Any):
        tx = payload["transaction_id"]
        stopped_at = tr.parse_ocpp_time(payload["timestamp"])
        known = await self.gw.store.run(st.transaction, self.identity.charger_id, tx)
        connector = known.connector if known is not None else (1 if self.identity.connectors == 1 else None)
        drafts, latest = ([], None) if connector is None else self._meter_drafts(
            connector, tx, payload.get("transaction_data") or [], known)
        if known is not None:  # meterStop is the register too: refuse a stop that cannot be true before noting it
            tr.check_register(tr.EnergyReading(stopped_at, payload["meter_stop"]),
                              (latest or self.readings.get(tx), known.start_reading), self.rated_w)
        record = await self.gw.store.run(st.record_stop, self.identity.charger_id, tx, stopped_at,
                                         payload["meter_stop"])
        if record is not None and record.stop_published:
            self.gw.counters.add("replays")
        elif connector is None:
            # OCPP's stop names no connector; the contract's needs one. Answer so the charger does not resend it.
            self.gw.counters.add("stops_of_unknown_transactions")
            log.warning("%s: stop of transaction %s the gateway never assigned: not published", self.identity, tx)
        else:
            await self._publish_readings(tx, drafts, latest)
            await self.gw.emit(self.identity, [tr.stop_draft(self.address, payload, connector)])
            if record is not None:
                await self.gw.store.run(st.mark_published, self.identity.charger_id, tx, "stop")
        self.readings.pop(tx, None)
        if payload.get("id_tag"):
            driver = await self.gw.store.run(st.driver_of_tag, payload["id_tag"])
            return call_result.StopTransaction(id_tag_info=tr.id_tag_info(driver))
        return call_result.StopTransaction()

    # -- contract -> charger

    def command(self, command: t.Command) -> None:
        """Send a command as an OCPP CALL in its own task (a handler must never wait for a CALL: the reader is busy)."""
        task = asyncio.get_running_loop().create_task(self._command(command))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _command(self, command: t.Command) -> None:
        answered = self.gw.answers[self.identity.charger_id]
        key = command.request_id
        if key in self.gw.in_flight:
            return  # a retry while the first copy waits for its answer
        if key in answered:
            status = answered[key]
            self.gw.counters.add("commands_answered_again")
        else:
            self.gw.in_flight.add(key)
            try:
                result = await self.call(tr.ocpp_call(command), suppress=False)
                status = getattr(result, "status", None)
            except OCPPError as exc:
                log.info("%s answered %s with a CALLERROR: %s", self.identity, command.name, exc)
                status = None
            except asyncio.TimeoutError:
                self.gw.counters.add("commands_unanswered")
                log.warning("%s did not answer %s %s", self.identity, command.name, key)
                return  # no result: the bridge retries the same request_id
            finally:
                self.gw.in_flight.discard(key)
            status = str(status) if status is not None else None
            answered[key] = status
            while len(answered) > ANSWERED_COMMANDS_KEPT:
                answered.popitem(last=False)
        self.gw.counters.add(f"commands_{command.name}")
        await self.gw.emit(self.identity, [tr.result_draft(self.address, command, status, self.gw.now())])


class Gateway:
    """The OCPP gateway of one app: ``start()`` in a thread of its own (tests, embedding) or ``await run(stop)``."""

    def __init__(self, app, options: GatewayOptions):
        self.app = app
        self.options = options
        self.clock = app.extensions["chargeapp.clock"]
        self.settings = parse_mqtt_url(options.mqtt_url or app.config.get("CHARGEAPP_MQTT_URL"),
                                       client_id=options.client_id)
        from chargeapp.services.auth import password_hasher

        self.hasher: PasswordHasher = password_hasher(*app.config["CHARGEAPP_ARGON2"])
        self.counters = Counters()
        self.store = st.Store(app)
        self.sessions: dict[int, OcppSession] = {}
        self.answers: dict[int, OrderedDict[str, str | None]] = defaultdict(OrderedDict)
        self.in_flight: set[str] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._tolerance: dict[str, int] = {}
        self.mqtt: MqttLink | None = None
        self.port: int | None = None
        self._verify: asyncio.Semaphore | None = None
        self._dummy_hash = self.hasher.hash("not a password of anyone")
        # thread mode
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def now(self):
        return self.clock.now()

    def lock_of(self, identity: registry.ChargerIdentity) -> asyncio.Lock:
        return self._locks.setdefault(identity.charger_id, asyncio.Lock())

    # -- publishing

    async def emit(self, identity: registry.ChargerIdentity, drafts: list[t.DeviceMessage]) -> None:
        """Stamp the drafts with the charger's next boot/seq, publish them in order, wait for the broker's PUBACKs."""
        for draft in drafts:
            t.format_message(draft)  # refuse a message the contract would refuse before it takes a seq
        received_at = self.now()
        tolerance = self._tolerance.get(identity.station)
        if tolerance is None:
            tolerance = self._tolerance[identity.station] = await self.store.run(
                st.skew_tolerance_seconds, identity.station)
        async with self.lock_of(identity):
            messages = await self.store.run(st.stamp_all, identity.charger_id, drafts, received_at, tolerance)
            futures = []
            for message in messages:
                topic, payload = t.format_message(message)
                futures.append(self.mqtt.publish(topic, payload, retain=message.topic_ref.retained))
        await asyncio.wait_for(asyncio.gather(*futures), self.options.puback_timeout)
        self.counters.add("published", len(messages))

    async def publish_online(self, identity: registry.ChargerIdentity, online: bool) -> None:
        topic = t.charger_online_topic(identity.station, identity.charger)
        future = self.mqtt.publish(topic, t.online_payload(online), retain=True)
        try:
            await asyncio.wait_for(future, self.options.puback_timeout)
        except asyncio.TimeoutError:
            log.warning("the broker did not acknowledge %s online=%s in time (paho keeps it queued)", identity, online)

    def _on_command(self, topic: str, payload: bytes) -> None:
        try:
            command = t.parse_message(topic, payload, self.now())
        except t.BadMessage as exc:
            self.counters.add("bad_commands")
            log.warning("bad command on %s: %s", topic, exc)
            return
        if not isinstance(command, t.Command):
            return
        session = next((s for s in self.sessions.values()
                        if (s.address.station, s.address.charger) == (command.station, command.charger)), None)
        if session is None:
            self.counters.add("commands_for_offline_chargers")
            log.info("%s for %s/%s: charger not connected, left to the bridge's retry",
                     command.name, command.station, command.charger)
            return
        session.command(command)

    # -- the WebSocket handshake

    def _refuse(self, connection: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
        self.counters.add(f"refused_{status.value}")
        response = connection.respond(status, text + "\n")
        if status is http.HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response

    async def _check_password(self, password_hash: str, password: str) -> bool:
        async with self._verify:
            try:
                return await asyncio.to_thread(self.hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

    async def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not path.startswith(PATH_PREFIX) or "/" in path[len(PATH_PREFIX):] or len(path) == len(PATH_PREFIX):
            return self._refuse(connection, http.HTTPStatus.NOT_FOUND, "Not an OCPP endpoint: use /ocpp/<chargePointId>")
        ocpp_id = unquote(path[len(PATH_PREFIX):])
        offered = [p.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for p in v.split(",")]
        if SUBPROTOCOL not in offered:
            return self._refuse(connection, http.HTTPStatus.BAD_REQUEST, f"Subprotocol {SUBPROTOCOL} required")
        username, password = _basic_credentials(request.headers.get("Authorization"))
        identity = await self.store.run(registry.charger_by_ocpp_id, ocpp_id) if username == ocpp_id else None
        # Check a hash either way, so a refusal takes as long for an unknown charger as for a wrong password.
        good = await self._check_password(identity.password_hash if identity else self._dummy_hash, password or "")
        if identity is None or not good:
            log.warning("refused %r from %s: unknown charger or wrong credentials", ocpp_id[:48],
                        connection.remote_address[0] if connection.remote_address else "?")
            return self._refuse(connection, http.HTTPStatus.UNAUTHORIZED, "Unknown charger or wrong password")
        connection.ocpp_identity = identity  # type: ignore[attr-defined]
        return None

    # -- one charger's connection

    async def _serve_charger(self, connection: ServerConnection) -> None:
        identity: registry.ChargerIdentity = connection.ocpp_identity  # type: ignore[attr-defined]
        previous = self.sessions.get(identity.charger_id)
        session = OcppSession(self, identity, connection)
        self.sessions[identity.charger_id] = session
        if previous is not None:
            log.info("%s connected again: closing its previous connection", identity)
            await previous._connection.close()
        self.mqtt.watch(identity.station, identity.charger)
        self.counters.add("connections")
        log.info("%s connected", identity)
        await self.publish_online(identity, True)
        try:
            await session.start()
        except ConnectionClosed:
            pass
        finally:
            for task in list(session.tasks):
                task.cancel()
            if self.sessions.get(identity.charger_id) is session:
                del self.sessions[identity.charger_id]
                log.info("%s disconnected", identity)
                await self.publish_online(identity, False)

    # -- running

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.options.certfile:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.options.certfile, self.options.keyfile)
        return context

    async def run(self, stop: asyncio.Event, ready: threading.Event | None = None) -> None:
        """Serve until ``stop`` is set, then close every charger's connection and say they are offline."""
        loop = asyncio.get_running_loop()
        self._verify = asyncio.Semaphore(self.options.verify_concurrency)
        self.mqtt = MqttLink(self.settings, loop, self._on_command)
        chargers = await self.store.run(registry.ocpp_chargers)
        for identity in chargers:
            self.mqtt.watch(identity.station, identity.charger)
        self.mqtt.start()
        try:
            # No charger is connected yet: clear any 'true' a previous run left (a crash sends no 'false').
            await asyncio.gather(*(self.publish_online(identity, False) for identity in chargers))
            async with serve(self._serve_charger, self.options.host, self.options.port,
                             subprotocols=[SUBPROTOCOL], process_request=self._authenticate,
                             ssl=self._ssl_context(), ping_interval=60, ping_timeout=60) as server:
                self.port = server.sockets[0].getsockname()[1]
                log.info("OCPP 1.6J on %s://%s:%d%s<chargePointId>, %d chargers in the registry",
                         "wss" if self.options.certfile else "ws", self.options.host, self.port, PATH_PREFIX,
                         len(chargers))
                if ready is not None:
                    ready.set()
                await stop.wait()
                # Closing a connection ends its handler, which says the charger is offline.
                server.close()
                await server.wait_closed()
        finally:
            self.mqtt.stop()
            self.store.close()

    def start(self, timeout: float = 15.0) -> "Gateway":
        """Run in a background thread with its own event loop; returns when it listens."""

        def main() -> None:
            async def body():
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                await self.run(self._stop, self._ready)

            try:
                asyncio.run(body())
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                log.exception("the gateway stopped with an error")
            finally:
                self._ready.set()

        self._thread = threading.Thread(target=main, name="ocpp-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None or self.port is None:
            raise RuntimeError(f"the OCPP gateway did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop a gateway started with ``start()`` and wait for its thread (a second call does nothing)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        if self._thread is not None:
            self._thread.join(timeout)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(username, password) of an HTTP Basic ``Authorization`` header, or (None, None)."""
    if not header:
        return None, None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else (None, None)
