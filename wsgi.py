"""WSGI entry point: ``gunicorn wsgi:app``."""
from chargeapp.app import create_app

app = create_app()
