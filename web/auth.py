"""Accounts: log in and out, roles, and the bearer tokens of the API."""
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import CSRFProtect, FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from web.db import ApiToken, LoginFailure, User, db, utcnow

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please log in to continue."
csrf = CSRFProtect()


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


LOGIN_WINDOW = timedelta(minutes=15)
FAILURES_PER_USER = 5        # within the window, per user name
FAILURES_PER_ADDRESS = 20    # within the window, per client address


@login_manager.user_loader
def load_user(user_id):
    """Return the user of a session cookie, unless that user has logged out since (session version)."""
    number, _, version = user_id.partition(":")
    if not number.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(number))
    return user if user is not None and user.session_version == int(version) else None


def login_blocked(username, address):
    """Say whether there were too many failed logins lately for this user name or address."""
    since = utcnow() - LOGIN_WINDOW
    recent = db.select(db.func.count(LoginFailure.id)).where(LoginFailure.at >= since)
    by_user = db.session.execute(recent.where(LoginFailure.username == username)).scalar()
    by_address = db.session.execute(recent.where(LoginFailure.address == address)).scalar()
    return by_user >= FAILURES_PER_USER or by_address >= FAILURES_PER_ADDRESS


def record_failure(username, address):
    """Remember a failed login; forget those older than the window."""
    db.session.execute(db.delete(LoginFailure).where(LoginFailure.at < utcnow() - LOGIN_WINDOW))
    db.session.add(LoginFailure(username=username[:64], address=address[:64]))
    db.session.commit()


def safe_next(target):
    """Return `target` when it is a path on this site, else the start page (no open redirects)."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//") \
                and "\\" not in target:
            return target
    return url_for("doctor.predict")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form and log a user in."""
    form = LoginForm()
    if form.validate_on_submit():
        address = request.remote_addr or "unknown"
        if login_blocked(form.username.data, address):
            flash(f"Too many failed logins. Try again in {LOGIN_WINDOW.seconds // 60} minutes.", "error")
            response = current_app.make_response((render_template("auth/login.html", form=form), 429))
            response.headers["Retry-After"] = str(LOGIN_WINDOW.seconds)
            return response
        user = db.session.execute(db.select(User).filter_by(username=form.username.data)).scalar_one_or_none()
        if user is not None and user.check_password(form.password.data):
            db.session.execute(db.delete(LoginFailure).where(LoginFailure.username == user.username))
            db.session.commit()
            login_user(user)
            return redirect(safe_next(request.args.get("next")))
        record_failure(form.username.data, address)
        flash("Wrong user name or password.", "error")
        return render_template("auth/login.html", form=form), 401
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Log the current user out, voiding every copy of the session cookie."""
    current_user.session_version += 1
    db.session.commit()
    logout_user()
    flash("You are logged out.", "info")
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


def user_for_token(header):
    """Return the user whose bearer token is in an Authorization header, or None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    row = db.session.execute(db.select(ApiToken).filter_by(token_hash=ApiToken.digest(token.strip())))
    token_row = row.scalar_one_or_none()
    return token_row.user if token_row else None


def init_app(app):
    """Install sessions and CSRF protection."""
    login_manager.init_app(app)
    csrf.init_app(app)
