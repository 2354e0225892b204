"""The MQTT client of the bridge: the only module that imports paho.

Everything past it sees ``Received``, a small frozen record of one publish. The
client keeps a persistent session (MQTT 3.1.1 clean session false; MQTT 5 clean
start false with a session expiry), subscribes at QoS 1 on every connect,
reconnects with backoff, and acknowledges a message only when the worker says
its effect is committed (paho's ``manual_ack``).

Why acknowledgements carry a connection number: a packet id (``mid``) belongs
to one connection's flow. After a reconnect the broker resends every
unacknowledged message with a packet id that may be reused for another message
once the first copy is acknowledged, so an acknowledgement for a message that
arrived on an earlier connection is dropped; its redelivered copy is applied as
a duplicate (no effect) and acknowledged on the connection it came on.
"""
from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Callable, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from chargeapp import telemetry

log = logging.getLogger("mqtt_bridge.client")

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_CLIENT_ID = "chargeapp-bridge"
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600  # seconds the broker keeps our session (and queues for it) while we are away
PROTOCOLS = ("auto", "5", "3.1.1")
_UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK "unacceptable protocol version" (3.1.1) / "unsupported protocol version" (5)
_QUERY_KEYS = {"client_id", "protocol", "ca", "cert", "key", "insecure", "keepalive", "session_expiry"}


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Received:
    """One publish as the bridge received it: topic, raw payload bytes, QoS, retain flag, receive time (aware, from the service clock), packet id.

    ``connection`` numbers the connection it arrived on, so that its acknowledgement
    is never sent on a later connection (see the module doc).
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: datetime
    mid: int = 0
    connection: int = 0


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect, from ``CHARGEAPP_MQTT_URL`` (see ``parse_mqtt_url``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False
    client_id: str = DEFAULT_CLIENT_ID
    protocol: str = "auto"
    keepalive: int = telemetry.KEEPALIVE_SECONDS
    session_expiry: int = DEFAULT_SESSION_EXPIRY

    @property
    def url(self) -> str:
        """The broker address without credentials, for logs."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_mqtt_url(url: str | None, *, client_id: str | None = None) -> BrokerSettings:
    """BrokerSettings of ``mqtt://user:pass@host:port?client_id=..&protocol=5|3.1.1|auto`` or ``mqtts://...?ca=..&cert=..&key=..&insecure=0``.

    None means the embedded default, mqtt://127.0.0.1:1883. User and password are
    percent-decoded. ``client_id`` (argument) is used when the URL names none.
    Unknown query parameters raise ValueError (a typo must not silently disable TLS).
    """
    parts = urlsplit(url or DEFAULT_URL)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"CHARGEAPP_MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - _QUERY_KEYS
    if unknown:
        raise ValueError(f"unknown CHARGEAPP_MQTT_URL parameters: {', '.join(sorted(unknown))}")
    protocol = query.get("protocol", "auto")
    if protocol in ("311", "3"):
        protocol = "3.1.1"
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    tls = parts.scheme == "mqtts"
    return BrokerSettings(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        ca_certs=query.get("ca") or None,
        certfile=query.get("cert") or None,
        keyfile=query.get("key") or None,
        tls_insecure=_flag(query.get("insecure", "0")),
        client_id=query.get("client_id") or client_id or DEFAULT_CLIENT_ID,
        protocol=protocol,
        keepalive=int(query.get("keepalive", telemetry.KEEPALIVE_SECONDS)),
        session_expiry=int(query.get("session_expiry", DEFAULT_SESSION_EXPIRY)),
    )


def _paho_client(settings: BrokerSettings, protocol: str, client_id: str, *, persistent: bool) -> mqtt.Client:
    v5 = protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else not persistent,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        reconnect_on_failure=True,
        manual_ack=True,
    )
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_certs, certfile=settings.certfile, keyfile=settings.keyfile)
        client.tls_insecure_set(settings.tls_insecure)
    return client


class ProtocolProbeFailed(ConnectionError):
    """The broker could not be asked which protocol it speaks (unreachable, or refused us)."""


def probe_protocol(settings: BrokerSettings, timeout: float = 5.0) -> str:
    """"5" if the broker answers an MQTT 5 CONNECT in MQTT 5, else "3.1.1"; raises ProtocolProbeFailed when unreachable.

    The probe connects anonymously under its own client id with a clean start,
    so it never touches the bridge's persistent session (nor sends its password
    twice). Any MQTT 5 answer, even "not authorized", proves the broker speaks
    5. "Unsupported protocol version", or a broker that closes the connection or
    never answers (amqtt 0.12 mis-parses some MQTT 5 CONNECTs), means 3.1.1.
    """
    done = threading.Event()
    answer: dict[str, int] = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        answer["rc"] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        done.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        done.set()

    anonymous = replace(settings, username=None, password=None)
    client = _paho_client(anonymous, "5", f"{settings.client_id}-probe", persistent=False)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, settings.keepalive))
    except (OSError, ValueError) as exc:
        raise ProtocolProbeFailed(f"cannot reach {settings.url}: {exc}") from None
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        try:
            client.disconnect()
        finally:
            client.loop_stop()
    rc = answer.get("rc")
    if rc is None:
        log.warning("%s did not answer an MQTT 5 CONNECT; using MQTT 3.1.1", settings.url)
        return "3.1.1"
    return "3.1.1" if rc in _UNSUPPORTED_PROTOCOL else "5"


class BridgeClient:
    """The bridge's connection: persistent session, QoS 1 subscriptions, manual acknowledgement, command publishing.

    ``on_received`` is called on paho's network thread for every publish and must
    not block (the worker takes it from a queue). ``ack`` and ``publish`` may be
    called from any thread.
    """

    def __init__(self, settings: BrokerSettings, *, subscriptions: tuple[str, ...],
                 on_received: Callable[[Received], None], clock: Clock, receive_maximum: int = 1000,
                 reconnect_min: float = 1.0, reconnect_max: float = 30.0,
                 on_session: Callable[[bool], None] | None = None):
        self.settings = settings
        self.subscriptions = tuple(subscriptions)
        self.receive_maximum = max(1, min(int(receive_maximum), 65535))
        self._on_received = on_received
        self._on_session = on_session
        self._clock = clock
        self._reconnect = (reconnect_min, reconnect_max)
        self._lock = threading.Lock()
        self._connection = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._client: mqtt.Client | None = None
        self._starter: threading.Thread | None = None
        self.protocol: str | None = None if settings.protocol == "auto" else settings.protocol
        self.session_present: bool | None = None
        self.subscribe_failures: list[str] = []

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (probing the protocol first when ``auto``); returns at once."""
        self._starter = threading.Thread(target=self._start, name="mqtt-connect", daemon=True)
        self._starter.start()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected (and subscribed requests sent) within ``timeout`` seconds."""
        return self._connected.wait(timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """True once the broker has answered the subscriptions of the current connection within ``timeout`` seconds."""
        return self._subscribed.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def stop(self) -> None:
        """Disconnect cleanly: acknowledgements already queued are sent before the DISCONNECT."""
        self._stopping.set()
        if self._starter is not None:
            self._starter.join(timeout=10)
        client = self._client
        if client is not None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()
        self._connected.clear()

    def _start(self) -> None:
        delay = self._reconnect[0]
        while self.protocol is None and not self._stopping.is_set():
            try:
                self.protocol = probe_protocol(self.settings)
                log.info("broker %s speaks MQTT %s", self.settings.url, self.protocol)
            except ProtocolProbeFailed as exc:
                log.warning("%s; retrying in %.0f s", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self._reconnect[1])
        if self._stopping.is_set():
            return
        client = _paho_client(self.settings, self.protocol, self.settings.client_id, persistent=True)
        client.reconnect_delay_set(min_delay=max(1, int(self._reconnect[0])), max_delay=max(1, int(self._reconnect[1])))
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        properties = None
        if self.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.session_expiry
            properties.ReceiveMaximum = self.receive_maximum
        self._client = client
        client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive,
                             clean_start=False, properties=properties)
        client.loop_start()

    # -- paho callbacks (network thread) ------------------------------------------

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker %s refused the connection: %s", self.settings.url, reason_code)
            return
        with self._lock:
            self._connection += 1
        self.session_present = bool(flags.session_present)
        log.info("connected to %s (MQTT %s, session %s)", self.settings.url, self.protocol,
                 "resumed" if flags.session_present else "new")
        if self._on_session is not None:
            self._on_session(self.session_present)
        if self.protocol == "5":
            # Retained messages only for a new subscription: a resumed session does not replay every retained status.
            topics = [(t, SubscribeOptions(qos=telemetry.QOS, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
                      for t in self.subscriptions]
        else:
            topics = [(t, telemetry.QOS) for t in self.subscriptions]
        if topics:
            client.subscribe(topics)
        self._connected.set()

    def _handle_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        failed = [topic for topic, rc in zip(self.subscriptions, reason_code_list) if rc.is_failure]
        for topic in failed:
            log.error("broker refused the subscription %s", topic)
        self.subscribe_failures = failed
        log.info("subscribed to %d topic filters at QoS 1", len(self.subscriptions) - len(failed))
        self._subscribed.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._connection += 1  # acks of messages from the lost connection are dropped from now on
            self._connected.clear()
            self._subscribed.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.settings.url, reason_code)

    def _handle_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "backslashreplace")  # parse_topic will call it bad_topic
        self._on_received(Received(
            topic=topic, payload=bytes(message.payload), qos=message.qos, retain=bool(message.retain),
            received_at=self._clock.now(), mid=message.mid, connection=self._connection,
        ))

    # -- called by the worker (any thread) -----------------------------------------

    def ack(self, received: Received) -> bool:
        """Acknowledge one QoS 1 message on the connection it came on; False (dropped) if that connection is gone."""
        if received.qos == 0:
            return True
        with self._lock:
            if self._client is None or received.connection != self._connection or not self._connected.is_set():
                return False
            return self._client.ack(received.mid, received.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, *, qos: int = telemetry.QOS,
                expiry_seconds: int | None = None) -> bool:
        """Queue one publish (not retained); the MQTT 5 message expiry is set when the broker speaks 5. False when not connected."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        properties = None
        if expiry_seconds and self.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = int(expiry_seconds)
        info = client.publish(topic, payload, qos=qos, retain=False, properties=properties)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS


def default_client_id(group: str | None) -> str:
    """A stable client id (so the persistent session survives restarts): one per host and share group when grouped."""
    if group:
        return f"{DEFAULT_CLIENT_ID}-{group}-{socket.gethostname()}"[:64]
    return DEFAULT_CLIENT_ID
