"""The MQTT bridge: station telemetry in, commands out (docs/bridge.md).

- ``client``: paho confined here; ``Received`` is what the rest sees.
- ``handler``: ``apply_message(session, received, now)``, one message, no broker needed.
- ``worker``: batches, commit-then-ack, database-error retry, outbox and periodic work
  (under ``chargeapp.services.lease``: once per deployment, not once per worker).
- ``outbox``: the only publisher of commands; timeouts, retries, failures.
- ``metrics``: Prometheus counters, /metrics and /healthz.
- ``bridge``: the three wired together; ``cli``: ``chargeapp bridge``.

Imports point one way: chargeapp's services and telemetry contract <- mqtt_bridge.
"""
