"""``python -m simulators``: the same as ``chargeapp simulate``."""
from simulators.cli import main

main()
