"""Use cases: load, apply a pure rule, persist. Each takes a SQLAlchemy session and a clock
(or ``now``), and is called by the HTTP API, the MQTT bridge and the CLI alike."""
