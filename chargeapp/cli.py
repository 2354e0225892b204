"""The ``chargeapp`` command: Flask's command line for the app, with every command of the project.

The app brings its own commands (``db`` from Flask-Migrate, and chargeapp/commands.py:
``seed``, ``create-manager``, ``reset-password``, ``tick``, ``rollup``, ``report``, ``map-device``,
``ocpp-password``, ``mqtt-credentials``). The process commands ``bridge``, ``simulate``,
``demo``, ``ocpp-gateway`` and ``broker-denials`` are entry points of the ``flask.commands`` group
(pyproject.toml), which this command line loads: only it imports the bridge, the
gateway, the simulators and the demo, never ``create_app`` (so no web worker loads
paho, websockets or ocpp). They run without an app context and build their own app.
"""
from __future__ import annotations

import click
from flask.cli import FlaskGroup


def _create_app():
    from chargeapp.app import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False, load_dotenv=False)
def main():
    """chargeapp: charging-slot reservation and drivers' lounge occupancy."""


if __name__ == "__main__":  # pragma: no cover
    main()
