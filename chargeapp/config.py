"""Deployment configuration from the environment, shared by the web app, the bridge and the simulators.

Only the deployment lives here (database, broker, secrets, clock for the demo);
per-station rules and prices live in the database.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DB_PATH = Path(os.environ.get("CHARGEAPP_DATA_DIR", "var")) / "chargeapp.db"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    """The deployment's settings; build with ``Settings.from_env()``."""

    database_url: str = f"sqlite:///{DEFAULT_DB_PATH.resolve()}"
    secret_key: str = "dev-insecure-change-me"
    mqtt_url: str | None = None
    ratelimit_storage_url: str = "memory://"
    # Refused logins per account (with back-off) and per client address (chargeapp/web/login_limits.py).
    login_rate_limit: str = "5 per minute;20 per hour"
    login_address_rate_limit: str = "50 per minute"
    max_body_bytes: int = 1024 * 1024  # a request body; larger is a 413 (nginx allows 1 MB too)
    # Argon2id parameters: OWASP minimum is m=19 MiB, t=2, p=1.
    argon2_memory_kib: int = 19456
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    token_max_age_seconds: int = 30 * 24 * 3600
    # Reverse proxies in front of the app whose X-Forwarded-* headers are trusted
    # (1 behind nginx); 0 means the peer address is the client.
    trusted_proxies: int = 0
    # Demo clock: start (RFC 3339) and speed factor; unset means the real clock.
    clock_start: str | None = None
    clock_speed: float = 1.0
    # Map tiles for the pages (GCJ-02 tiles: markers are shifted to GCJ-02); a Leaflet
    # URL template. Its host is added to the pages' Content-Security-Policy img-src.
    map_tiles: str = "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}"
    map_tile_subdomains: str = "1234"
    map_attribution: str = "\u00a9 AutoNavi"
    # The pages' session cookie Secure flag: "auto" (set when the request came over
    # HTTPS, e.g. through nginx), "1" always, "0" never (plain http demos and tests).
    session_cookie_secure: str = "auto"
    # PostgreSQL time limits, in seconds (0: none). A database that is down or hung
    # costs a request or a bridge batch at most about connect + ping time, not forever.
    db_connect_timeout: int = 5  # opening a connection (libpq connect_timeout; at least 2)
    db_statement_timeout: float = 10.0  # the server cancels a statement running longer
    db_lock_timeout: float = 5.0  # ...or waiting longer for a lock
    db_pool_timeout: float = 10.0  # waiting for a free connection of the process's pool
    # Dead letters (refused MQTT messages, docs/bridge.md): kept this many days (0: forever), pruned by the
    # periodic work; at most this many stored per source (a device's topics) per hour (0: no cap), the rest
    # counted as dropped.
    dead_letter_retention_days: int = 30
    dead_letter_cap_per_hour: int = 100
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "Settings":
        d = cls()
        return cls(
            database_url=_env("CHARGEAPP_DATABASE_URL", d.database_url),
            secret_key=_env("CHARGEAPP_SECRET_KEY", d.secret_key),
            mqtt_url=_env("CHARGEAPP_MQTT_URL"),
            ratelimit_storage_url=_env("CHARGEAPP_RATELIMIT_STORAGE_URL", d.ratelimit_storage_url),
            login_rate_limit=_env("CHARGEAPP_LOGIN_RATE_LIMIT", d.login_rate_limit),
            login_address_rate_limit=_env("CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT", d.login_address_rate_limit),
            max_body_bytes=int(_env("CHARGEAPP_MAX_BODY_BYTES", str(d.max_body_bytes))),
            argon2_memory_kib=int(_env("CHARGEAPP_ARGON2_MEMORY_KIB", str(d.argon2_memory_kib))),
            argon2_time_cost=int(_env("CHARGEAPP_ARGON2_TIME_COST", str(d.argon2_time_cost))),
            trusted_proxies=int(_env("CHARGEAPP_TRUSTED_PROXIES", "0")),
            clock_start=_env("CHARGEAPP_CLOCK_START"),
            clock_speed=float(_env("CHARGEAPP_CLOCK_SPEED", "1")),
            map_tiles=_env("CHARGEAPP_MAP_TILES", d.map_tiles),
            map_tile_subdomains=_env("CHARGEAPP_MAP_TILE_SUBDOMAINS", d.map_tile_subdomains),
            map_attribution=_env("CHARGEAPP_MAP_ATTRIBUTION", d.map_attribution),
            session_cookie_secure=_env("CHARGEAPP_SESSION_COOKIE_SECURE", d.session_cookie_secure),
            db_connect_timeout=int(_env("CHARGEAPP_DB_CONNECT_TIMEOUT", str(d.db_connect_timeout))),
            db_statement_timeout=float(_env("CHARGEAPP_DB_STATEMENT_TIMEOUT", str(d.db_statement_timeout))),
            db_lock_timeout=float(_env("CHARGEAPP_DB_LOCK_TIMEOUT", str(d.db_lock_timeout))),
            db_pool_timeout=float(_env("CHARGEAPP_DB_POOL_TIMEOUT", str(d.db_pool_timeout))),
            dead_letter_retention_days=int(_env("CHARGEAPP_DEAD_LETTER_RETENTION_DAYS",
                                                str(d.dead_letter_retention_days))),
            dead_letter_cap_per_hour=int(_env("CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR", str(d.dead_letter_cap_per_hour))),
        )

    def flask_config(self) -> dict:
        """The Flask config mapping for these settings."""
        return {
            "SECRET_KEY": self.secret_key,
            "SQLALCHEMY_DATABASE_URI": self.database_url,
            "CHARGEAPP_MQTT_URL": self.mqtt_url,
            "RATELIMIT_STORAGE_URI": self.ratelimit_storage_url,
            "CHARGEAPP_LOGIN_RATE_LIMIT": self.login_rate_limit,
            "CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT": self.login_address_rate_limit,
            "MAX_CONTENT_LENGTH": self.max_body_bytes,
            "CHARGEAPP_ARGON2": (self.argon2_time_cost, self.argon2_memory_kib, self.argon2_parallelism),
            "CHARGEAPP_TOKEN_MAX_AGE": self.token_max_age_seconds,
            "CHARGEAPP_TRUSTED_PROXIES": self.trusted_proxies,
            "CHARGEAPP_CLOCK_START": self.clock_start,
            "CHARGEAPP_CLOCK_SPEED": self.clock_speed,
            "CHARGEAPP_MAP_TILES": self.map_tiles,
            "CHARGEAPP_MAP_TILE_SUBDOMAINS": self.map_tile_subdomains,
            "CHARGEAPP_MAP_ATTRIBUTION": self.map_attribution,
            "CHARGEAPP_SESSION_COOKIE_SECURE": self.session_cookie_secure,
            "CHARGEAPP_DB_TIMEOUTS": {"connect": self.db_connect_timeout, "statement": self.db_statement_timeout,
                                      "lock": self.db_lock_timeout, "pool": self.db_pool_timeout},
            "CHARGEAPP_DEAD_LETTER_RETENTION_DAYS": self.dead_letter_retention_days,
            "CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR": self.dead_letter_cap_per_hour,
        }
