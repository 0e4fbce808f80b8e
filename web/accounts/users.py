"""Administrators' page for accounts: list them, disable or enable one, revoke its API tokens."""
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user

from web.auth import admin_required
from web.db import ApiToken, User, audit, db

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
    user = find_user(username)
    if user.id == current_user.id:
        abort(409, "You cannot disable your own account; another administrator can.")
    revoked = user.disable()
    audit(current_user, "user.disable", f"{username} ({revoked} token(s) revoked)")
    db.session.commit()
    flash(f"Disabled {username}; {revoked} API token(s) revoked and every session ended.", "info")
    return redirect(url_for("accounts.users"))


@bp.post("/<username>/enable")
def enable(username):
    """Let a disabled account log in again."""
    user = find_user(username)
    user.enable()
    audit(current_user, "user.enable", username)
    db.session.commit()
    flash(f"Enabled {username}: they can log in again (old API tokens stay revoked).", "info")
    return redirect(url_for("accounts.users"))


@bp.post("/<username>/revoke-tokens")
def revoke_tokens(username):
    """Revoke every API token of an account."""
    revoked = find_user(username).revoke_tokens()
    audit(current_user, "token.revoke", f"{revoked} of {username}")
    db.session.commit()
    flash(f"Revoked {revoked} API token(s) of {username}.", "info")
    return redirect(url_for("accounts.users"))
