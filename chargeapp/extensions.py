"""Flask extensions, created unbound here and bound in ``create_app``."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_smorest import Api

from chargeapp.db import db

migrate = Migrate()
api = Api()
limiter = Limiter(key_func=get_remote_address, default_limits=[])

__all__ = ["db", "migrate", "api", "limiter"]
