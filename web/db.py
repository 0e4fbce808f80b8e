"""The database: accounts, API tokens, training jobs and the audit log (schema via Alembic migrations)."""
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
    """Let the web workers read while a training process writes its progress."""
    if type(connection).__module__.startswith("sqlite3"):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()


class User(UserMixin, db.Model):
    """A doctor or an administrator."""
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), unique=True, nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    role = db.Column(db.String(16), nullable=False)
    created_at = db.Column(db.DateTime, nullable=False, default=utcnow)
    # Part of the session cookie's user id: raising it on logout voids every copy of old cookies.
    session_version = db.Column(db.Integer, nullable=False, default=0, server_default="0")

    def get_id(self):
        return f"{self.id}:{self.session_version}"

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @property
    def is_admin(self):
        return self.role == "admin"


class ApiToken(db.Model):
    """A bearer token for the API; only its SHA-256 is stored."""
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
    """One training run: its options, live progress and outcome."""
    id = db.Column(db.Integer, primary_key=True)
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
        body = {"id": self.id, "dataset": self.dataset, "options": self.options, "status": self.status,
                "progress": self.progress, "history": self.history, "created_by": self.created_by,
                "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at)}
        if self.model_version:
            body["model_version"] = self.model_version
        if self.error:
            body["error"] = self.error
        return body


class LoginFailure(db.Model):
    """A failed login, kept for a while to slow down password guessing."""
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(64), nullable=False, index=True)
    address = db.Column(db.String(64), nullable=False, index=True)
    at = db.Column(db.DateTime, nullable=False, default=utcnow, index=True)


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
