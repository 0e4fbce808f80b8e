"""Set-password links: how a user made on the users page, or one whose password was reset, chooses a password.

A link is signed with the site's secret and names the account and the password it replaces (a digest
of its hash), so it works once: setting a password, with the link or otherwise, voids it. It lasts
LINK_DAYS days and says nothing to a holder of an expired or used one but that. The token travels in
the query string, which neither gunicorn's nor nginx's access log records.
"""
import hashlib
import secrets

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from wtforms import PasswordField
from wtforms.validators import DataRequired, EqualTo, Length

from web.accounts.actions import MIN_PASSWORD_LENGTH, AccountError, set_password
from web.db import db
from web.records import User

LINK_DAYS = 3
bp = Blueprint("password_links", __name__)


class PasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[
        DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=256,
                               message=f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")])
    repeat = PasswordField("The same again", validators=[
        DataRequired(), EqualTo("password", message="The two passwords differ.")])


def _signer():
    return URLSafeTimedSerializer(current_app.secret_key, salt="facedx.set-password")


def _replaces(user):
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def unknown_password():
    """Return a password nobody is told: an account holds it until its owner sets one with a link."""
    return secrets.token_urlsafe(32)


def password_link(user):
    """Return the full address of a link that lets `user` set a password once, within LINK_DAYS days."""
    token = _signer().dumps({"user": user.id, "replaces": _replaces(user)})
    return url_for("password_links.set_password_page", token=token, _external=True)


def user_of(token):
    """Return the enabled account a link is for while its password is still the one the link replaces, else None."""
    try:
        content = _signer().loads(token, max_age=LINK_DAYS * 24 * 3600)
    except BadData:
        return None
    user = db.session.get(User, content.get("user")) if isinstance(content, dict) else None
    if user is None or not user.is_active or not secrets.compare_digest(_replaces(user), str(content.get("replaces"))):
        return None
    return user


@bp.route("/set-password", methods=["GET", "POST"])
def set_password_page():
    """Let the holder of a set-password link choose the account's password, then log in with it."""
    user = user_of(request.args.get("token", ""))
    if user is None:
        response = current_app.make_response((render_template("auth/set_password.html", form=None,
                                                               days=LINK_DAYS), 404))
    else:
        form = PasswordForm()
        if form.validate_on_submit():
            try:
                set_password(user, user, form.password.data)
            except AccountError as error:
                flash(str(error), "error")
            else:
                flash(f"Your password is set, {user.username}: log in with it.", "info")
                return redirect(url_for("auth.login"))
        status = 400 if form.errors else 200
        response = current_app.make_response((render_template(
            "auth/set_password.html", form=form, user=user, min_length=MIN_PASSWORD_LENGTH), status))
    response.headers["Cache-Control"] = "no-store"
    return response
