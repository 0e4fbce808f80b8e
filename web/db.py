"""The database: accounts, API tokens, login throttle, jobs and the audit log (schema via Alembic migrations)."""
import functools
import hashlib
import json
import secrets
from datetime import datetime, timezone

from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.security import check_password_hash, generate_password_hash

db = SQLAlchemy()

ROLES = ("admin", "doctor")
ACTIVE_STATES = ("queued", "running")


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(connection, record):
    """Let the web workers read while a training process writes; make SQLite honour ON DELETE CASCADE."""
    if type(connection).__module__.startswith("sqlite3"):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")     # off by default: deleting an account would leave its tokens
        cursor.close()


def disk_full(error):
    """Say whether a database error means the disk (or the database's quota) is full."""
    original = getattr(error, "orig", error)
    return "database or disk is full" in str(original) or getattr(original, "sqlstate", None) == "53100"


def new_session_key():
    """Return a random value for a session cookie's user id."""
    return secrets.token_urlsafe(16)


@functools.cache
def _unused_hash():
    """A hash made as set_password makes them, of a password nobody knows (see User.check_no_password)."""
    return generate_password_hash(secrets.token_urlsafe(32))


class User(UserMixin, db.Model):
    """A doctor or an administrator."""
    __table_args__ = {"sqlite_autoincrement": True}     # an id is never given to a later account
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    role = db.Column(db.String(16), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Random, in the session cookie's user id: a new one voids every copy of old cookies, and an
    # account that somehow got a deleted account's id still cannot inherit its sessions.
    session_key = db.Column(db.String(32), nullable=False, default=new_session_key)
    disabled_at = db.Column(db.DateTime)

    def get_id(self):
        return f"{self.id}:{self.session_key}"

    @property
    def is_active(self):
        return self.disabled_at is None

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @staticmethod
    def check_no_password(password):
        """Spend on a name no account has what checking a password costs, then say no.

        Without it a wrong password took 0.3 s for an existing account and 0.04 s for an unknown
        name: the time told which names exist.
        """
        check_password_hash(_unused_hash(), password)
        return False

    def change_password(self, password):
        """Set a new password and end the sessions and tokens that the old one opened."""
        self.set_password(password)
        self.end_sessions()
        self.revoke_tokens()

    def end_sessions(self):
        """Void every session cookie of this account."""
        self.session_key = new_session_key()

    def revoke_tokens(self):
        """Delete every API token of this account; return how many there were."""
        return db.session.execute(db.delete(ApiToken).where(ApiToken.user_id == self.id)).rowcount

    def disable(self):
        """Refuse this account from now on: no login, no session, no token; return how many tokens went."""
        self.disabled_at = utcnow()
        self.end_sessions()
        return self.revoke_tokens()

    def enable(self):
        """Let a disabled account log in again (its old sessions and tokens stay void)."""
        self.disabled_at = None

    @property
    def is_admin(self):
        return self.role == "admin"


class EndedLogin(db.Model):
    """A browser's login that was logged out: any copy of its session cookie is refused from then on.

    Each login gives its session a random id; logging out records it here, so that only that
    browser's session ends ("log out everywhere" changes the account's session key instead).
    """
    id = db.Column(db.String(32), primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True)
    ended_at = db.Column(db.DateTime, nullable=False, default=utcnow)


class ApiToken(db.Model):
    """A bearer token for the API; only its SHA-256 is stored."""
    __table_args__ = {"sqlite_autoincrement": True}     # `flask token revoke ID` never hits a later token
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("user.id", ondelete="CASCADE"), nullable=False)
    token_hash = db.Column(db.String(64), unique=True, nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    user = db.relationship(User)

    @staticmethod
    def digest(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user):
        """Create a token for `user`; return (row, the token in clear, shown once)."""
        token = secrets.token_urlsafe(32)
        return cls(user=user, token_hash=cls.digest(token)), token


class TrainingJob(db.Model):
    """One job run in a process of its own: a training, or a dataset import; its options, live progress and outcome."""
    id = db.Column(db.Integer, primary_key=True)
    kind = db.Column(db.String(16), nullable=False, default="training", server_default="training", index=True)
    dataset = db.Column(db.String(64), nullable=False)
    options_json = db.Column(db.Text, nullable=False)
    status = db.Column(db.String(16), nullable=False, default="queued")
    progress_json = db.Column(db.Text, nullable=False, default="{}")
    history_json = db.Column(db.Text, nullable=False, default="[]")
    model_version = db.Column(db.String(32))
    error = db.Column(db.Text)
    cancel_requested = db.Column(db.Boolean, nullable=False, default=False)
    pid = db.Column(db.Integer)
    # Set by the training process every few seconds; how a queue's job on another machine is known alive.
    heartbeat_at = db.Column(db.DateTime)
    created_by = db.Column(db.String(64))
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    started_at = db.Column(db.DateTime)
    finished_at = db.Column(db.DateTime)

    options = property(lambda self: json.loads(self.options_json))
    progress = property(lambda self: json.loads(self.progress_json or "{}"))
    history = property(lambda self: json.loads(self.history_json or "[]"))

    @property
    def active(self):
        return self.status in ACTIVE_STATES

    def as_dict(self):
        """Return the job as the API's JSON object."""
        body = {"id": self.id, "kind": self.kind, "dataset": self.dataset, "options": self.options,
                "status": self.status, "progress": self.progress, "history": self.history,
                "created_by": self.created_by, "created_at": _iso(self.created_at),
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at)}
        if self.model_version:
            body["model_version"] = self.model_version
        if self.error:
            body["error"] = self.error
        return body


class LoginThrottle(db.Model):
    """Login attempts in the current window for a user name from an address ("" stands for any of them)."""
    username = db.Column(db.String(64), primary_key=True)
    address = db.Column(db.String(64), primary_key=True)
    attempts = db.Column(db.Integer, nullable=False)
    window_start = db.Column(db.DateTime, nullable=False, index=True)


class AuditEvent(db.Model):
    """Who did what to datasets and models, and when; never patient data."""
    id = db.Column(db.Integer, primary_key=True)
    at = db.Column(db.DateTime, nullable=False, default=utcnow)
    username = db.Column(db.String(64), nullable=False)
    action = db.Column(db.String(32), nullable=False)
    target = db.Column(db.String(128), nullable=False, default="")


def audit(actor, action, target=""):
    """Record an administrative action by a user, or by a name such as the command line's (committed by the caller)."""
    db.session.add(AuditEvent(username=getattr(actor, "username", actor), action=action, target=str(target)))


def _iso(moment):
    return moment.replace(tzinfo=timezone.utc).isoformat(timespec="seconds") if moment else None


class Feedback(db.Model):
    """A doctor's clinical assessment of one result, beside what the model said; never the photo."""
    __table_args__ = {"sqlite_autoincrement": True}
    id = db.Column(db.Integer, primary_key=True)
    result_id = db.Column(db.String(32), unique=True, nullable=False)     # one record per result shown
    # Kept when the account is deleted: the assessment still tells how the model does in practice.
    user_id = db.Column(db.Integer, db.ForeignKey("user.id", ondelete="SET NULL"), index=True)
    model_version = db.Column(db.String(64), nullable=False, index=True)
    probabilities_json = db.Column(db.Text, nullable=False)     # [[label, probability], ...], highest first
    decision = db.Column(db.String(128), nullable=False)        # the condition the model named, or "referred"
    assessment = db.Column(db.String(128), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    probabilities = property(lambda self: json.loads(self.probabilities_json))


class IntendedUse(db.Model):
    """What a model version is for, as an administrator of this site states it (the card stays immutable)."""
    model_version = db.Column(db.String(64), primary_key=True)
    text = db.Column(db.Text, nullable=False)
    updated_by = db.Column(db.String(64), nullable=False)
    updated_at = db.Column(db.DateTime, nullable=False, default=utcnow, onupdate=utcnow)
