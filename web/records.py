"""The database's records: accounts, API tokens, login throttle, jobs, feedback and the audit log.

Plain SQLAlchemy, no Flask: the web app reaches them through Flask-SQLAlchemy (web/db.py), a
job's process (worker.py) through a session of its own. The schema is kept by Alembic migrations.
"""
import functools
import hashlib
import json
import secrets
from datetime import datetime, timezone

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, LargeBinary, String, Text, delete, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, object_session, relationship
from werkzeug.security import check_password_hash, generate_password_hash


class Base(DeclarativeBase):
    """The records' declarative base; Flask-SQLAlchemy's `db.Model` is built on it."""


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


class User(Base):
    """A doctor or an administrator (what Flask-Login asks of a user is written out: no Flask here)."""
    __tablename__ = "user"
    __table_args__ = {"sqlite_autoincrement": True}     # an id is never given to a later account
    id = Column(Integer, primary_key=True)
    username = Column(String(64), unique=True, nullable=False)
    password_hash = Column(String(255), nullable=False)
    role = Column(String(16), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    # Random, in the session cookie's user id: a new one voids every copy of old cookies, and an
    # account that somehow got a deleted account's id still cannot inherit its sessions.
    session_key = Column(String(32), nullable=False, default=new_session_key)
    disabled_at = Column(DateTime)

    is_authenticated = True
    is_anonymous = False

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
        return object_session(self).execute(delete(ApiToken).where(ApiToken.user_id == self.id)).rowcount

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


class EndedLogin(Base):
    """A browser's login that was logged out: any copy of its session cookie is refused from then on.

    Each login gives its session a random id; logging out records it here, so that only that
    browser's session ends ("log out everywhere" changes the account's session key instead).
    """
    __tablename__ = "ended_login"
    id = Column(String(32), primary_key=True)
    user_id = Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False, index=True)
    ended_at = Column(DateTime, nullable=False, default=utcnow)


class ApiToken(Base):
    """A bearer token for the API; only its SHA-256 is stored."""
    __tablename__ = "api_token"
    __table_args__ = {"sqlite_autoincrement": True}     # `flask token revoke ID` never hits a later token
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("user.id", ondelete="CASCADE"), nullable=False)
    token_hash = Column(String(64), unique=True, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    user = relationship(User)

    @staticmethod
    def digest(token):
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, user):
        """Create a token for `user`; return (row, the token in clear, shown once)."""
        token = secrets.token_urlsafe(32)
        return cls(user=user, token_hash=cls.digest(token)), token


class Job(Base):
    """One job run in a process of its own: a training, or a dataset import; its options, live progress and outcome."""
    __tablename__ = "training_job"
    id = Column(Integer, primary_key=True)
    kind = Column(String(16), nullable=False, default="training", server_default="training", index=True)
    dataset = Column(String(64), nullable=False)
    options_json = Column(Text, nullable=False)
    status = Column(String(16), nullable=False, default="queued")
    progress_json = Column(Text, nullable=False, default="{}")
    history_json = Column(Text, nullable=False, default="[]")
    model_version = Column(String(32))
    error = Column(Text)
    cancel_requested = Column(Boolean, nullable=False, default=False)
    pid = Column(Integer)
    # Set by the training process every few seconds; how a queue's job on another machine is known alive.
    heartbeat_at = Column(DateTime)
    created_by = Column(String(64))
    created_at = Column(DateTime, nullable=False, default=utcnow)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)

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


class LoginThrottle(Base):
    """Login attempts in the current window for a user name from an address ("" stands for any of them)."""
    __tablename__ = "login_throttle"
    username = Column(String(64), primary_key=True)
    address = Column(String(64), primary_key=True)
    attempts = Column(Integer, nullable=False)
    window_start = Column(DateTime, nullable=False, index=True)


class AuditEvent(Base):
    """Who did what to datasets and models, and when; never patient data."""
    __tablename__ = "audit_event"
    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, default=utcnow)
    username = Column(String(64), nullable=False)
    action = Column(String(32), nullable=False)
    target = Column(String(128), nullable=False, default="")


def _iso(moment):
    return moment.replace(tzinfo=timezone.utc).isoformat(timespec="seconds") if moment else None


class Feedback(Base):
    """A doctor's clinical assessment of one result, beside what the model said; never the photo."""
    __tablename__ = "feedback"
    __table_args__ = {"sqlite_autoincrement": True}
    id = Column(Integer, primary_key=True)
    result_id = Column(String(32), unique=True, nullable=False)     # one record per result shown
    # Kept when the account is deleted: the assessment still tells how the model does in practice.
    user_id = Column(Integer, ForeignKey("user.id", ondelete="SET NULL"), index=True)
    model_version = Column(String(64), nullable=False, index=True)
    probabilities_json = Column(Text, nullable=False)     # [[label, probability], ...], highest first
    decision = Column(String(128), nullable=False)        # the condition the model named, or "referred"
    assessment = Column(String(128), nullable=False)
    # Only where the site opted in (FACEDX_STORE_CASE_REFERENCE, FACEDX_KEEP_THUMBNAILS_DAYS); else always empty.
    case_reference = Column(String(64))
    thumbnail = Column(LargeBinary)                       # the analysed face, a small JPEG
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    probabilities = property(lambda self: json.loads(self.probabilities_json))


class IntendedUse(Base):
    """What a model version is for, as an administrator of this site states it (the card stays immutable)."""
    __tablename__ = "intended_use"
    model_version = Column(String(64), primary_key=True)
    text = Column(Text, nullable=False)
    updated_by = Column(String(64), nullable=False)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)
