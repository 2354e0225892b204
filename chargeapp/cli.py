"""The ``chargeapp`` command (a Flask CLI group)."""


def register(app) -> None:
    pass


def main():
    pass
