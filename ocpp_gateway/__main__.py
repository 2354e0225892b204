"""``python -m ocpp_gateway``: the same as ``chargeapp ocpp-gateway``."""
from ocpp_gateway.cli import ocpp_gateway_command

ocpp_gateway_command()  # pragma: no cover
