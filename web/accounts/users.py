"""Administrators' page for accounts: list them, disable or enable one, revoke its API tokens."""
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from web.accounts import actions
from web.accounts.auth import admin_required
from web.db import db
from web.records import ApiToken, User

bp = Blueprint("accounts", __name__, url_prefix="/admin/users")


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


@bp.get("")
def users():
    """List the accounts with their role, state and number of API tokens."""
    counts = db.session.execute(db.select(ApiToken.user_id, db.func.count()).group_by(ApiToken.user_id))
    accounts = db.session.execute(db.select(User).order_by(User.username)).scalars().all()
    return render_template("accounts/users.html", users=accounts, tokens=dict(counts.all()))


@bp.post("/<username>/disable")
def disable(username):
    """Disable an account: it can no longer log in, and its sessions and API tokens end."""
    revoked = actions.disable_user(current_user, find_user(username))
    flash(f"Disabled {username}; {revoked} API token(s) revoked and every session ended.", "info")
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
    flash(f"Revoked {revoked} API token(s) of {username}.", "info")
    return redirect(url_for("accounts.users"))
