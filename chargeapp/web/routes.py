"""Registers every blueprint of the HTTP API."""


def register(app, api) -> None:
    pass
