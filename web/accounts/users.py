"""Administrators' page for accounts: list, create, disable or enable one, reset its password, issue or revoke tokens.

A new account, and one whose password was reset, gets a set-password link (web/accounts/password_links.py);
a new API token is shown once. Each change is one of the account actions (web/accounts/actions.py).
"""
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length

from ml.errors import FaceDxError
from web.accounts import actions
from web.accounts.auth import admin_required
from web.accounts.password_links import LINK_DAYS, password_link, unknown_password
from web.db import db
from web.errors import status_of
from web.records import ApiToken, User
from web.readable import plural

bp = Blueprint("accounts", __name__, url_prefix="/admin/users")


class NewUserForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    role = SelectField("Role", choices=[SelectChoice("doctor", "doctor"), SelectChoice("admin", "administrator")])


@bp.before_request
@admin_required
def require_admin():
    """Every page here is for administrators only."""


def find_user(username):
    """Return the account named `username`, or answer 404."""
    user = db.session.execute(db.select(User).filter_by(username=username)).scalar_one_or_none()
    if user is None:
        abort(404, f"There is no user named {username}.")
    return user


def users_page(form=None, issued=None, status=200):
    """Answer with the accounts, their role, state and number of API tokens; `issued`: a secret shown once."""
    counts = db.session.execute(db.select(ApiToken.user_id, db.func.count()).group_by(ApiToken.user_id))
    accounts = db.session.execute(db.select(User).order_by(User.username)).scalars().all()
    response = render_template("accounts/users.html", users=accounts, tokens=dict(counts.all()),
                               form=form or NewUserForm(formdata=None), issued=issued, link_days=LINK_DAYS)
    return response, status


@bp.get("")
def users():
    """List the accounts, with the form that creates one."""
    return users_page()


@bp.post("")
def create():
    """Create an account; show once the link with which its owner sets a password."""
    form = NewUserForm()
    if not form.validate_on_submit():
        return users_page(form, status=400)
    try:
        user = actions.create_user(current_user, form.username.data.strip(), form.role.data, unknown_password())
    except FaceDxError as error:
        flash(str(error), "error")
        return users_page(form, status=status_of(error))
    return users_page(issued={"kind": "link", "user": user.username, "secret": password_link(user),
                              "done": f"Created the {form.role.data} account {user.username}."}, status=201)


@bp.post("/<username>/password")
def reset_password(username):
    """Reset a password: the old one stops working, sessions end, tokens go; show once a set-password link."""
    user = find_user(username)
    if user.id == current_user.id:
        raise actions.AccountConflict("Reset another account's password here; another administrator can reset yours.")
    actions.set_password(current_user, user, unknown_password())
    return users_page(issued={"kind": "link", "user": username, "secret": password_link(user),
                              "done": f"Reset the password of {username}: the old one no longer works, every "
                                      "session of the account ended and its API tokens were revoked."})


@bp.post("/<username>/tokens")
def create_token(username):
    """Issue an API token for an account; show it once (only its digest is stored)."""
    row, token = actions.create_token(current_user, find_user(username))
    return users_page(issued={"kind": "token", "user": username, "secret": token,
                              "done": f"Issued API token {row.id} for {username}."}, status=201)


@bp.post("/<username>/disable")
def disable(username):
    """Disable an account: it can no longer log in, and its sessions and API tokens end."""
    revoked = actions.disable_user(current_user, find_user(username))
    flash(f"Disabled {username}; {plural(revoked, 'API token')} revoked and every session ended.", "info")
    return redirect(url_for("accounts.users"))


@bp.post("/<username>/enable")
def enable(username):
    """Let a disabled account log in again."""
    actions.enable_user(current_user, find_user(username))
    flash(f"Enabled {username}: they can log in again (old API tokens stay revoked).", "info")
    return redirect(url_for("accounts.users"))


@bp.post("/<username>/revoke-tokens")
def revoke_tokens(username):
    """Revoke every API token of an account."""
    revoked = actions.revoke_tokens(current_user, find_user(username))
    flash(f"Revoked {plural(revoked, 'API token')} of {username}.", "info")
    return redirect(url_for("accounts.users"))
