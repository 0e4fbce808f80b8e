"""Accounts: log in and out, roles, and the bearer tokens of the API."""
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, login_required, login_url, login_user, logout_user
from flask_wtf import CSRFProtect, FlaskForm
from sqlalchemy import case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from web.db import db
from web.records import ApiToken, EndedLogin, LoginThrottle, User, disk_full, utcnow

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to continue."
LOGIN_ID = "login_id"          # the session's random id, given at login, recorded when it logs out
csrf = CSRFProtect()


@login_manager.unauthorized_handler
def unauthorized():
    """Send a browser to the login page, as Flask-Login does; tell a page's script (it asks for JSON) why, with 401."""
    from web.errors import error_response, wants_json

    if wants_json():
        return error_response(401, "Your session has ended: log in again, then repeat this.")
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(login_url(login_manager.login_view, next_url=request.url))


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


@dataclass(frozen=True)
class Limit:
    """At most `attempts` logins per `window`, counted from the first one."""
    attempts: int
    window: timedelta


# As the OWASP authentication cheat sheet advises: a guesser is slowed down per (account, address),
# so guesses from elsewhere cannot lock a user out; a slower account-wide backstop stops guesses
# spread over many addresses (one address alone, at 5 per 15 minutes, never reaches it), and a
# per-address limit stops one address trying many accounts.
PER_ACCOUNT_AND_ADDRESS = Limit(attempts=5, window=timedelta(minutes=15))
PER_ACCOUNT = Limit(attempts=50, window=timedelta(hours=1))
PER_ADDRESS = Limit(attempts=30, window=timedelta(minutes=15))
ANY = ""
# A browser that logged in to an account before carries a signed device cookie for it (OWASP's
# "device cookies"): its attempts count against its own allowance only, so guesses from elsewhere
# that block the account-wide allowance do not lock the owner out of a browser they use.
DEVICE_COOKIE = "facedx_device"
DEVICE_COOKIE_DAYS = 365


@login_manager.user_loader
def load_user(user_id):
    """Return the enabled user of a session cookie, unless its sessions were ended since (session key)."""
    number, _, key = user_id.partition(":")
    if not number.isdigit() or not key:
        return None
    user = db.session.get(User, int(number))
    if user is None or not user.is_active or not secrets.compare_digest(user.session_key.encode(), key.encode()):
        return None
    login = session.get(LOGIN_ID)
    if isinstance(login, str) and db.session.get(EndedLogin, login) is not None:
        return None                       # this browser logged out; this is a copy of its cookie
    return user


def count_attempt(username, address, limit):
    """Count one login attempt against `limit`; return the seconds to wait when it is over, else 0.

    One upsert counts and reads in a single step under SQLite's write lock or PostgreSQL's row
    lock, so concurrent attempts in any thread, worker or node never pass the limit together.
    Committing at once keeps one row lock per transaction: nothing can wait in a circle.
    """
    now = utcnow()
    table = LoginThrottle.__table__
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[db.engine.dialect.name](table)
    expired = table.c.window_start <= now - limit.window
    statement = insert.values(username=username, address=address, attempts=1, window_start=now).on_conflict_do_update(
        index_elements=[table.c.username, table.c.address],
        set_={"attempts": case((expired, 1), else_=table.c.attempts + 1),
              "window_start": case((expired, now), else_=table.c.window_start)},
    ).returning(table.c.attempts, table.c.window_start)
    attempts, window_start = db.session.execute(statement).one()
    db.session.commit()
    if attempts <= limit.attempts:
        return 0
    return max(1, math.ceil((window_start + limit.window - now).total_seconds()))


def admit_attempt(username, address, device=None):
    """Count a login attempt before its password is checked; return the seconds to wait when over a limit, else 0.

    The first limit reached stops the counting, so a blocked guesser does not use up the
    account-wide allowance that the account's other addresses share. A browser with a device
    cookie of this account (`device`) is counted on its own allowance only.
    """
    table = LoginThrottle.__table__
    longest = max(PER_ACCOUNT_AND_ADDRESS.window, PER_ACCOUNT.window, PER_ADDRESS.window)
    try:
        db.session.execute(db.delete(table).where(table.c.window_start < utcnow() - longest))
        db.session.commit()
        if device is not None:
            return count_attempt(username[:64], device_key(device), PER_ACCOUNT_AND_ADDRESS)
        return (count_attempt(username[:64], address[:64], PER_ACCOUNT_AND_ADDRESS)
                or count_attempt(username[:64], ANY, PER_ACCOUNT) or count_attempt(ANY, address[:64], PER_ADDRESS))
    except OperationalError:
        db.session.rollback()
        raise


def forget_attempt(username, address, device=None):
    """After a successful login: clear the (account, address) count and give back the shared allowances."""
    table = LoginThrottle.__table__
    username, address = username[:64], address[:64]
    statements = [db.delete(table).where(table.c.username == username, table.c.address == address)]
    if device is not None:
        statements.append(db.delete(table).where(table.c.username == username, table.c.address == device_key(device)))
    statements += [db.update(table).where(table.c.username == key[0], table.c.address == key[1], table.c.attempts > 0)
                   .values(attempts=table.c.attempts - 1) for key in ((username, ANY), (ANY, address))]
    try:
        for statement in statements:
            db.session.execute(statement)
            db.session.commit()
    except OperationalError:
        db.session.rollback()        # the counts stay a little high: that only slows this account down
        log.warning("could not clear the login attempts of a successful login", exc_info=True)


def device_key(device):
    """The login throttle's 'address' for a trusted browser."""
    return f"device:{device}"[:64]


def _device_signer():
    from itsdangerous import URLSafeSerializer

    return URLSafeSerializer(current_app.secret_key, salt="facedx.device")


def trusted_device(username):
    """Return the id of this browser's device cookie when it was given at a login to `username`, else None."""
    from itsdangerous import BadData

    try:
        content = _device_signer().loads(request.cookies.get(DEVICE_COOKIE, ""))
    except BadData:
        return None
    if isinstance(content, dict) and content.get("user") == username and isinstance(content.get("id"), str):
        return content["id"]
    return None


def remember_device(response, username, device=None):
    """Give this browser a device cookie for `username` (keeping its id if it had one)."""
    value = _device_signer().dumps({"user": username, "id": device or secrets.token_urlsafe(16)})
    response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_COOKIE_DAYS * 24 * 3600, httponly=True,
                        secure=current_app.config["SESSION_COOKIE_SECURE"], samesite="Lax")
    return response


def safe_next(target):
    """Return `target` when it is a path on this site, else the start page (no open redirects).

    A control character (a CR LF would split the Location header) sends the user to the start page.
    """
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target and target.isprintable():
            return target
    return url_for("doctor.predict")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log a user in."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("auth/login.html", form=form)
    address = request.remote_addr or "unknown"
    device = trusted_device(form.username.data)
    try:
        wait = admit_attempt(form.username.data, address, device)
    except OperationalError as error:
        if not disk_full(error):
            raise
        # Fail closed: a guess that cannot be counted is not checked.
        flash("Logins are paused: the server's disk is full. Ask the administrator to free space.", "error")
        return render_template("auth/login.html", form=form), 507
    if wait:
        flash(f"Too many failed logins. Try again in {math.ceil(wait / 60)} minutes.", "error")
        response = current_app.make_response((render_template("auth/login.html", form=form), 429))
        response.headers["Retry-After"] = str(wait)
        return response
    user = db.session.execute(db.select(User).filter_by(username=form.username.data)).scalar_one_or_none()
    if not (User.check_no_password(form.password.data) if user is None else user.check_password(form.password.data)):
        flash("Wrong user name or password.", "error")
        return render_template("auth/login.html", form=form), 401
    forget_attempt(user.username, address, device)
    if not user.is_active:
        flash("This account is disabled. Ask an administrator.", "error")
        return render_template("auth/login.html", form=form), 403
    login_user(user)
    session[LOGIN_ID] = secrets.token_urlsafe(16)
    # A new CSRF secret for the logged-in session: one read before the login (e.g. planted) is void.
    session.pop("csrf_token", None)
    g.pop("csrf_token", None)
    return remember_device(redirect(safe_next(request.args.get("next"))), user.username, device)


@bp.post("/logout")
@login_required
def logout():
    """Log this browser out, voiding every copy of its session cookie; other browsers stay logged in.

    The session ends whatever happens to the record: on a full disk the cookie is still cleared,
    and the page says that copies of it could not be voided.
    """
    login = session.get(LOGIN_ID)
    recorded = _commit_or_full_disk(lambda: db.session.add(EndedLogin(id=login, user_id=current_user.id))
                                    if isinstance(login, str) else current_user.end_sessions())
    return _logged_out("You are logged out in this browser." if recorded else
                       "You are logged out in this browser, but the server's disk is full: a copy of this "
                       "browser's session could not be voided. Log out everywhere once there is space.")


@bp.post("/logout/everywhere")
@login_required
def logout_everywhere():
    """Log the account out in every browser (its session key changes)."""
    recorded = _commit_or_full_disk(current_user.end_sessions)
    return _logged_out("You are logged out in every browser." if recorded else
                       "You are logged out in this browser, but the server's disk is full: the other browsers "
                       "could not be logged out. Try again once there is space.")


def _commit_or_full_disk(change):
    """Make a change and commit it; return False (rolled back) when the disk is full."""
    try:
        change()
        db.session.commit()
        return True
    except OperationalError as error:
        db.session.rollback()
        if not disk_full(error):
            raise
        return False


def _logged_out(message):
    logout_user()
    session.clear()
    flash(message, "info" if "disk is full" not in message else "error")
    return redirect(url_for("auth.login"))


def admin_required(view):
    """Send anonymous users to the login page and refuse doctors (403)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)
    return wrapper


@bp.get("/auth/upload-allowed")
def upload_allowed():
    """Answer nginx's auth_request before it reads an archive's body: 204 for an administrator, else 401 or 403.

    The request's method comes in X-Original-Method: reading (GET, HEAD) is always let through, the
    page or the API then decides as ever. An administrator is one by session cookie or API token.
    """
    if request.headers.get("X-Original-Method", "GET").upper() in ("GET", "HEAD"):
        return "", 204
    user = current_user if current_user.is_authenticated else user_for_token(request.headers.get("Authorization"))
    if user is None:
        return "", 401
    return "", 204 if user.is_admin else 403


def user_for_token(header):
    """Return the user whose bearer token is in an Authorization header, or None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = db.session.execute(db.select(ApiToken).filter_by(token_hash=ApiToken.digest(token.strip())))
    token_row = row.scalar_one_or_none()
    # A token left behind by an account deleted outside the app (foreign keys off) has no user.
    user = token_row.user if token_row else None
    return user if user is not None and user.is_active else None


def no_store_when_logged_in(response):
    """Keep what a logged-in user was shown out of every cache: after logout, Back cannot bring it back."""
    if request.endpoint != "static" and session.get("_user_id"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app):
    """Install sessions, CSRF protection and uncached pages for logged-in users."""
    login_manager.init_app(app)
    csrf.init_app(app)
    app.after_request(no_store_when_logged_in)
