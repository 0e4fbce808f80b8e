"""Actions on accounts and API tokens, one function each: it checks, does the work, audits and commits.

The users page and the `user` and `token` commands call these; none of them audits on its own.
"""
import re

from ml.errors import FaceDxError
from web.db import audit, db
from web.readable import plural
from web.records import ApiToken, User

MIN_PASSWORD_LENGTH = 10
USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
ROLES = ("admin", "doctor")


class AccountError(FaceDxError):
    """An account action that cannot be done as asked (a bad name, role or password): 400."""


class AccountConflict(FaceDxError):
    """An account action that conflicts with what exists (the name is taken, one's own account): 409."""


def check_password(password):
    """Refuse a password shorter than MIN_PASSWORD_LENGTH."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")


def create_user(actor, name, role, password):
    """Create an account with `password`; return it."""
    if not USER_NAME.fullmatch(name or ""):
        raise AccountError("A user name is 1-64 letters, digits, '.', '-', '_' or '@'.")
    if role not in ROLES:
        raise AccountError(f"A role is one of {', '.join(ROLES)}.")
    if db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none():
        raise AccountConflict(f"A user named {name!r} already exists.")
    check_password(password)
    user = User(username=name, role=role)
    user.set_password(password)
    db.session.add(user)
    audit(actor, "user.create", f"{name} ({role})")
    db.session.commit()
    return user


def set_password(actor, user, password):
    """Set a user's password; their sessions end and their API tokens are revoked."""
    check_password(password)
    user.change_password(password)
    audit(actor, "user.password", user.username)
    db.session.commit()


def disable_user(actor, user):
    """Stop `user` from logging in; end their sessions and revoke their tokens. Return how many were revoked."""
    if getattr(actor, "id", None) == user.id:
        raise AccountConflict("You cannot disable your own account; another administrator can.")
    revoked = user.disable()
    audit(actor, "user.disable", f"{user.username} ({plural(revoked, 'token')} revoked)")
    db.session.commit()
    return revoked


def enable_user(actor, user):
    """Let a disabled account log in again (its old sessions and API tokens stay void)."""
    user.enable()
    audit(actor, "user.enable", user.username)
    db.session.commit()


def delete_user(actor, user):
    """Delete an account and its API tokens (the audit log keeps the name)."""
    name = user.username
    db.session.delete(user)            # the database deletes its tokens (ON DELETE CASCADE)
    audit(actor, "user.delete", name)
    db.session.commit()


def create_token(actor, user):
    """Issue an API token for `user`; return (its record, the token itself: shown once, stored hashed)."""
    row, token = ApiToken.issue(user)
    db.session.add(row)
    db.session.flush()
    audit(actor, "token.create", f"{row.id} of {user.username}")
    db.session.commit()
    return row, token


def revoke_token(actor, token, owner):
    """Revoke one API token; `owner` names its account (one removed outside the application too)."""
    audit(actor, "token.revoke", f"{token.id} of {owner}")
    db.session.delete(token)
    db.session.commit()


def revoke_tokens(actor, user):
    """Revoke every API token of an account; return how many."""
    revoked = user.revoke_tokens()
    audit(actor, "token.revoke", f"{revoked} of {user.username}")
    db.session.commit()
    return revoked
