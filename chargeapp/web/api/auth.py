"""Register, log in, who am I."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from chargeapp.db import db
from chargeapp.services import auth as auth_service
from chargeapp.web.login_limits import login_limited
from chargeapp.web.security import clock, current_user, hasher, issue_token
from chargeapp.web.transaction import transaction

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")


EMAIL_FORMAT = "The email address format is wrong: write it like name@example.com."


class RegisterSchema(Schema):
    email = fields.Email(required=True, validate=validate.Length(max=254), error_messages={"invalid": EMAIL_FORMAT})
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=200))
    name = fields.String(load_default="", validate=validate.Length(max=100))
    plate = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32), metadata={
        "description": "optional; an ordinary (沪A12345) or new-energy (沪AD12345, 沪A12345D) mainland plate. "
                       "A plate off the format is a 422 whose code names the rule broken."})


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=200))


class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    id_tags = fields.Method("_tags")
    suspended_until = fields.AwareDateTime(allow_none=True)

    def _tags(self, user):
        from chargeapp.db import models as m

        return [t.tag for t in db.session.query(m.IdTag).filter_by(user_id=user.id)]


class TokenSchema(Schema):
    token = fields.String()
    user = fields.Nested(UserSchema)


@blp.route("/register")
class Register(MethodView):
    @blp.arguments(RegisterSchema)
    @blp.response(201, TokenSchema)
    def post(self, body):
        """Create a driver account; returns a bearer token."""
        with transaction():
            user = auth_service.register_driver(db.session, clock().now(), hasher(), **body)
        return {"token": issue_token(user), "user": user}


@blp.route("/login")
class Login(MethodView):
    # Only refused logins count, per account and (far higher) per address: web/login_limits.py.
    decorators = [login_limited(lambda resp: resp.status_code != 200)]

    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    def post(self, body):
        """Exchange email and password for a bearer token (refused attempts are limited per account and per client)."""
        with transaction():  # a rehashed password is kept
            user = auth_service.authenticate(db.session, hasher(), body["email"], body["password"])
        return {"token": issue_token(user), "user": user}


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, UserSchema)
    @blp.doc(security=[{"bearerAuth": []}])
    def get(self):
        """The logged-in account."""
        return current_user()
