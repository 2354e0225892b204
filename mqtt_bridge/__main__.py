"""``python -m mqtt_bridge``: the same as ``chargeapp bridge``."""
from mqtt_bridge.cli import bridge_command

if __name__ == "__main__":  # pragma: no cover
    bridge_command(prog_name="python -m mqtt_bridge")
