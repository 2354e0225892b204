"""The MQTT adapter: one paho client per simulated device, all driven from one thread.

Each device connects as itself (username and client id ``station.device``),
with its last will (``false``, retained, QoS 1) on its online topic, a
persistent session (MQTT 3.1.1 clean session off, or MQTT 5 clean start off
with a session expiry) and a 30 s keepalive, and publishes ``true`` retained as
soon as it connects. Chargers subscribe to their own command topics at QoS 1.

paho runs in its "external event loop" mode: the runner's thread selects on
every client's socket and calls ``loop_read`` / ``loop_write`` / ``loop_misc``,
so commands are delivered on the simulation's own thread and no locks are
needed. While a device's link is down paho keeps its QoS 1 messages and sends
them, in order, after the reconnect: late, with their original device time.
A planned network outage closes the socket without DISCONNECT, so the broker
publishes the device's last will, exactly as when a real charger loses its
network.
"""
from __future__ import annotations

import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chargeapp import telemetry as t
from simulators.devices import Charger, Device

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to speak to it, from a URL like ``mqtt://host:1883?protocol=3.1.1``.

    Schemes: ``mqtt``/``tcp`` (default port 1883) and ``mqtts``/``ssl`` (TLS, 8883).
    Query, as in ``CHARGEAPP_MQTT_URL``: ``protocol`` = ``3.1.1``, ``5`` or ``auto``
    (devices speak 3.1.1 unless told 5: every broker has it); ``ca`` = CA file,
    ``cert``/``key`` = client certificate; ``insecure=1`` skips the host-name check.
    The bridge's own keys (``client_id``, ``keepalive``, ``session_expiry``) are
    ignored. A user and password in the URL are the service's, not the devices':
    devices log in as ``station.device``.
    """

    host: str
    port: int
    tls: bool = False
    protocol: str = "3.1.1"
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    tls_insecure: bool = False

    @classmethod
    def from_url(cls, url: str) -> BrokerSettings:
        parts = urlsplit(url)
        scheme = (parts.scheme or "mqtt").lower()
        if scheme not in ("mqtt", "tcp", "mqtts", "ssl", "tls"):
            raise ValueError(f"unsupported broker URL scheme {scheme!r} (use mqtt:// or mqtts://)")
        tls = scheme in ("mqtts", "ssl", "tls")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        protocol = query.get("protocol", "3.1.1").lower().removeprefix("mqttv").removeprefix("v")
        protocol = {"311": "3.1.1", "3": "3.1.1", "3.1.1": "3.1.1", "auto": "3.1.1",
                    "5": "5", "5.0": "5", "50": "5"}.get(protocol)
        if protocol is None:
            raise ValueError("protocol must be 3.1.1, 5 or auto")
        if not parts.hostname:
            raise ValueError(f"no host in broker URL {url!r}")
        return cls(
            host=unquote(parts.hostname), port=parts.port or (8883 if tls else 1883), tls=tls, protocol=protocol,
            ca_certs=query.get("ca") or query.get("ca_certs"), certfile=query.get("cert"), keyfile=query.get("key"),
            tls_insecure=(query.get("insecure") or query.get("tls_insecure") or "").lower() in ("1", "true", "yes"),
        )


class _Link:
    """One device's client and what we want of it."""

    def __init__(self, device: Device, client: mqtt.Client):
        self.device = device
        self.client = client
        self.wanted = False          # the device's link should be up
        self.started = False         # connect() has been called once
        self.retry_at = 0.0
        self.backoff = 1.0
        self.registered: tuple[socket.socket, int] | None = None


class MqttNetwork:
    """A ``Sink`` over a real broker: creates, connects, drops and polls the devices' paho clients."""

    def __init__(self, settings: BrokerSettings, on_command: Callable[[str, bytes], None], *,
                 password: str | None = None, keepalive: int = t.KEEPALIVE_SECONDS):
        self.settings = settings
        self.on_command = on_command
        self.password = password
        self.keepalive = keepalive
        self.links: dict[str, _Link] = {}
        self.selector = selectors.DefaultSelector()
        self._last_misc = 0.0
        self.published = 0
        self.received = 0

    # -- Sink ------------------------------------------------------------------------

    def connect(self, device: Device) -> None:
        link = self.links.get(device.key) or self._new_link(device)
        link.wanted = True
        link.backoff = 1.0
        self._open(link)

    def disconnect(self, device: Device, *, abrupt: bool) -> None:
        link = self.links.get(device.key)
        if link is None:
            return
        link.wanted = False
        client = link.client
        if abrupt:
            sock = client.socket()
            if sock is not None:
                # Lose the connection without a DISCONNECT packet: the broker publishes the will.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._unregister(link)
                client.loop_read()  # paho notices, closes its side, keeps unacknowledged messages
        else:
            # Say offline ourselves; the DISCONNECT follows in close(), after drain(), so that stopping
            # hundreds of devices takes one round trip, not one per device.
            client.publish(device.online_topic, t.online_payload(False), qos=t.QOS, retain=True)

    def publish(self, device: Device, topic: str, payload: bytes, retain: bool) -> None:
        link = self.links.get(device.key) or self._new_link(device)
        link.client.publish(topic, payload, qos=t.QOS, retain=retain)
        self.published += 1

    # -- clients ---------------------------------------------------------------------

    def _new_link(self, device: Device) -> _Link:
        v5 = self.settings.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=device.key,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
        )
        client.username_pw_set(device.key, self.password)
        will = device.last_will
        client.will_set(will.topic, will.payload, will.qos, will.retain)
        if self.settings.tls:
            client.tls_set(ca_certs=self.settings.ca_certs, certfile=self.settings.certfile,
                           keyfile=self.settings.keyfile, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(self.settings.tls_insecure)
        client.max_inflight_messages_set(100)
        link = _Link(device, client)

        def on_connect(c, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                log.warning("%s: broker refused the connection: %s", device.key, reason_code)
                return
            link.backoff = 1.0
            if isinstance(device, Charger):
                c.subscribe(t.command_subscription(device.station.code, device.device_id), qos=t.QOS)

        def on_message(c, userdata, message):
            self.received += 1
            try:
                self.on_command(message.topic, bytes(message.payload))
            except Exception:  # a bad command must never stop the devices
                log.exception("%s: handling a command on %s failed", device.key, message.topic)

        client.on_connect = on_connect
        client.on_message = on_message
        self.links[device.key] = link
        return link

    def _open(self, link: _Link) -> None:
        client = link.client
        try:
            if not link.started:
                props = None
                if self.settings.protocol == "5":
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
                    client.connect(self.settings.host, self.settings.port, self.keepalive,
                                   clean_start=False, properties=props)
                else:
                    client.connect(self.settings.host, self.settings.port, self.keepalive)
                link.started = True
            else:
                client.reconnect()
        except OSError as e:
            link.retry_at = time.monotonic() + link.backoff
            link.backoff = min(link.backoff * 2, 30.0)
            log.info("%s: cannot reach the broker (%s); retrying", link.device.key, e)
            return
        # Online first: before anything queued while the link was down (paho sends that at CONNACK).
        client.publish(link.device.online_topic, t.online_payload(True), qos=t.QOS, retain=True)
        self._register(link)

    def _register(self, link: _Link) -> None:
        sock = link.client.socket()
        if sock is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if link.client.want_write() else 0)
        if link.registered is not None and link.registered[0] is sock:
            if link.registered[1] != events:
                self.selector.modify(sock, events, link)
                link.registered = (sock, events)
            return
        self._unregister(link)
        try:
            self.selector.register(sock, events, link)
            link.registered = (sock, events)
        except (ValueError, OSError):
            link.registered = None

    def _unregister(self, link: _Link) -> None:
        if link.registered is not None:
            try:
                self.selector.unregister(link.registered[0])
            except (KeyError, ValueError, OSError):
                pass
            link.registered = None

    # -- the loop ---------------------------------------------------------------------

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for socket activity and service every client (reads, writes, keepalive, reconnects)."""
        for link in self.links.values():
            if link.client.socket() is not None:
                self._register(link)
            else:
                self._unregister(link)
        if self.selector.get_map():
            ready = self.selector.select(timeout=max(timeout, 0.0))
        else:
            time.sleep(max(timeout, 0.0))
            ready = []
        for key, mask in ready:
            link: _Link = key.data
            client = link.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 0.5:
            self._last_misc = now
            for link in self.links.values():
                client = link.client
                if client.socket() is not None:
                    client.loop_misc()
                elif link.wanted and now >= link.retry_at:
                    # Lost without being asked to (broker restart, network): reconnect with backoff.
                    link.retry_at = now + link.backoff
                    link.backoff = min(link.backoff * 2, 30.0)
                    self._open(link)

    def drain(self, timeout: float = 5.0) -> None:
        """Poll until every connected client's messages are acknowledged, or ``timeout`` (seconds, for all together)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = any(link.client.is_connected() and link.client._out_messages
                       for link in self.links.values())
            if not busy:
                return
            self.poll(0.05)

    def close(self, timeout: float = 2.0) -> None:
        """Disconnect every client cleanly (DISCONNECT: no will), within ``timeout`` seconds in all, and close."""
        for link in self.links.values():
            link.wanted = False
            if link.client.socket() is not None:
                try:
                    link.client.disconnect()
                except (OSError, ValueError):
                    pass
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(link.client.socket() is not None and link.client.want_write()
                                             for link in self.links.values()):
            self.poll(0.05)
        for link in self.links.values():
            self._unregister(link)
            sock = link.client.socket()
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        self.selector.close()
