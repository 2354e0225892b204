"""Station simulators: chargers, lounge door counters and garage gates speaking the MQTT telemetry contract.

Layout (imports: the telemetry contract, the config module and the clock; never
the database, the services or the web app):

- ``scheduler``: discrete events over simulated time.
- ``devices``: chargers (OCPP 1.6 states, transactions, meter, commands), door counters, gates.
- ``ev``: cars, batteries and charging power curves.
- ``behaviour``: arrivals, drivers' visits, bookings, incidents.
- ``population``: the fixed driver roster (the demo creates their accounts).
- ``simulation``: all of it on one scheduler, publishing through a sink.
- ``sinks`` (memory, JSON lines) and ``mqtt`` (one paho client per device): where messages go.
- ``bookings``: the drivers' HTTP client for the booking API.
- ``runner``, ``cli``: real-time and virtual runs, ``chargeapp simulate``.
"""
