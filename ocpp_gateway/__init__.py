"""OCPP 1.6J gateway: chargers that speak OCPP over WebSocket join the MQTT telemetry contract.

``translate`` (pure: OCPP payloads <-> contract messages), ``store`` (id tags and
the gateway's counters in the database; which chargers may connect is
``chargeapp.services.registry``'s), ``mqtt`` (paho), ``gateway`` (the
WebSocket server and one OCPP session per charger), ``cli`` (``chargeapp
ocpp-gateway``). See docs/ocpp.md.
"""
