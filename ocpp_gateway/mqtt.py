"""The gateway's MQTT link: the only module of the gateway that imports paho.

One client for every charger the gateway speaks for (its own login; the ACL
gives it exactly its chargers' topics). It keeps a persistent session (3.1.1
clean session off, or MQTT 5 clean start off with a session expiry), so commands
published while the gateway is away wait for it; subscribes to each of its
chargers' command topics; and turns every QoS 1 publish into an asyncio future
that resolves when the broker acknowledges it (PUBACK), so the gateway answers a
charger only once its message is safe with the broker.

paho runs its own network thread (``loop_start``); everything it reports is handed
to the event loop with ``call_soon_threadsafe``. A publish's future is
registered on the loop thread right after ``publish`` returns, before any
PUBACK callback can run there, so none is missed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from chargeapp import telemetry as t
from mqtt_bridge.client import BrokerSettings

log = logging.getLogger("ocpp_gateway.mqtt")


class MqttLink:
    """A paho client bridged to one asyncio loop: ``publish`` returns a future, commands arrive via ``on_command``."""

    def __init__(self, settings: BrokerSettings, loop: asyncio.AbstractEventLoop,
                 on_command: Callable[[str, bytes], None]):
        self.settings = settings
        self.loop = loop
        self.on_command = on_command
        self.v5 = settings.protocol == "5"
        self._topics: set[str] = set()
        self._lock = threading.Lock()  # guards _topics between the loop and paho's thread
        self._pending: dict[int, asyncio.Future] = {}
        self.connected = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=settings.client_id,
            clean_session=None if self.v5 else False,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            reconnect_on_failure=True,
        )
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_certs, certfile=settings.certfile, keyfile=settings.keyfile)
            client.tls_insecure_set(settings.tls_insecure)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self.client = client

    def start(self) -> None:
        """Connect in the background (paho reconnects by itself with backoff)."""
        properties = None
        if self.v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.session_expiry
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive,
                                  clean_start=False if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=properties)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- subscriptions

    def watch(self, station: str, charger: str) -> None:
        """Receive this charger's commands (now if connected, and after every reconnect)."""
        topic = t.command_subscription(station, charger)
        with self._lock:
            if topic in self._topics:
                return
            self._topics.add(topic)
        if self.connected.is_set():
            self.client.subscribe(topic, qos=t.QOS)

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.settings.url, reason_code)
            return
        log.info("connected to %s", self.settings.url)
        self.connected.set()
        with self._lock:
            topics = sorted(self._topics)
        if topics:
            client.subscribe([(topic, t.QOS) for topic in topics])

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        (log.warning if reason_code.is_failure else log.info)("disconnected from %s (%s)", self.settings.url, reason_code)

    def _handle_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, bytes(message.payload)
        self.loop.call_soon_threadsafe(self.on_command, topic, payload)

    # -- publishing

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> asyncio.Future:
        """Publish at QoS 1 (queued by paho while disconnected); the future resolves at the broker's PUBACK.

        Call on the event loop's thread.
        """
        future = self.loop.create_future()
        info = self.client.publish(topic, payload, qos=t.QOS, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: kept, sent on connect
            future.set_exception(ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}"))
        else:
            self._pending[info.mid] = future
            # A publish given up on (timeout) leaves no entry behind; paho may still deliver it, unwatched.
            future.add_done_callback(lambda f, mid=info.mid: self._forget(mid, f))
        return future

    def _forget(self, mid: int, future: asyncio.Future) -> None:
        if future.cancelled() and self._pending.get(mid) is future:
            del self._pending[mid]

    def _handle_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.loop.call_soon_threadsafe(self._published, mid)

    def _published(self, mid: int) -> None:
        future = self._pending.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)
