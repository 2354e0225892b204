"""OCPP 1.6J gateway: chargers that speak OCPP over WebSocket join the MQTT telemetry contract.

``translate`` (pure: OCPP payloads <-> contract messages), ``store`` (the registry
and the gateway's counters in the database), ``mqtt`` (paho), ``gateway`` (the
WebSocket server and one OCPP session per charger), ``cli`` (``chargeapp
ocpp-gateway`` and ``chargeapp ocpp-password``). See docs/ocpp.md.
"""
