import sqlite3
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event

from tests.helpers import PASSWORD, bearer_headers, concurrent_wrong_logins, form_token, login, make_user


def test_anonymous_users_are_sent_to_the_login_page(client):
    for path in ("/", "/admin/datasets", "/admin/models"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_and_logout(client, tokens):
    login(client, "dan")
    assert client.get("/").status_code == 200
    response = client.post("/logout", data={"csrf_token": form_token(client, "/")})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused(client, tokens):
    response = client.post("/login", data={"username": "dan", "password": "wrong password",
                                           "csrf_token": form_token(client, "/login")})
    assert response.status_code == 401 and "Wrong user name or password" in response.get_data(as_text=True)


def test_logging_in_gives_the_session_a_new_csrf_secret(client, tokens):
    form_token(client, "/login")
    with client.session_transaction() as session:
        before = session["csrf_token"]
    login(client, "dan")
    form_token(client, "/")
    with client.session_transaction() as session:
        assert session["csrf_token"] != before
    planted = client.post("/logout", data={"csrf_token": _signed(client, before)})
    assert planted.status_code == 400                    # a token of the secret from before the login is void


def _signed(client, secret):
    """Return a form token signed for `secret`, as Flask-WTF signs them."""
    from itsdangerous import URLSafeTimedSerializer

    app = client.application
    with app.app_context():
        return URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").dumps(secret)


def test_an_unknown_name_costs_a_password_check_too(client, tokens, monkeypatch):
    """Timing must not tell which names exist: an unknown name's password is checked against a hash too."""
    import web.records

    checked = []
    original = web.records.check_password_hash
    monkeypatch.setattr(web.records, "check_password_hash", lambda *args: checked.append(args[0]) or original(*args))
    for name in ("dan", "nobody-here"):
        response = client.post("/login", data={"username": name, "password": "wrong password",
                                               "csrf_token": form_token(client, "/login")})
        assert response.status_code == 401
    assert len(checked) == 2 and checked[0].split("$")[0] == checked[1].split("$")[0]     # the same method


def test_a_form_without_a_csrf_token_is_refused(client, tokens):
    response = client.post("/login", data={"username": "dan", "password": PASSWORD})
    assert response.status_code == 400
    login(client, "ada")
    assert client.post("/admin/models/rollback").status_code == 400
    assert client.post("/logout").status_code == 400


@pytest.mark.parametrize("path", ["/admin/datasets", "/admin/training", "/admin/models", "/admin/audit",
                                  "/admin/training/1.json", "/admin/users"])
def test_doctors_cannot_reach_admin_pages(client, tokens, path):
    login(client, "dan")
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("target, expected", [
    ("/admin/models", "/admin/models"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\\\evil.example", "/"),
    ("/%0d%0aX:1", "/"),                        # a forged header line
    ("/admin%09models", "/"),
])
def test_next_never_leaves_the_site(client, tokens, target, expected):
    response = client.post(f"/login?next={target}", data={"username": "ada", "password": PASSWORD,
                                                          "csrf_token": form_token(client, "/login")})
    assert response.headers["Location"] == expected


def test_pages_send_security_headers(client):
    headers = client.get("/login").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_user_and_token_commands(app, runner):
    result = runner.invoke(args=["user", "create", "carol", "--role", "doctor"], input="a long password\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["user", "create", "carol", "--role", "doctor"], input="a long password\n")
    assert result.exit_code == 1 and "already exists" in result.output
    result = runner.invoke(args=["user", "create", "eve", "--role", "doctor"], input="short\n")
    assert result.exit_code == 1 and "at least 10 characters" in result.output
    result = runner.invoke(args=["token", "create", "carol"])
    token = result.output.split()[-1]
    assert result.exit_code == 0 and len(token) > 30
    with app.app_context():
        from web.db import db
        from web.records import ApiToken
        stored = db.session.execute(db.select(ApiToken)).scalar_one()
        assert stored.token_hash != token and stored.token_hash == ApiToken.digest(token)
    client = app.test_client()
    assert client.get("/api/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_setup_creates_the_first_admin_once(app, runner):
    result = runner.invoke(args=["setup"])
    assert result.exit_code == 0 and "user name: admin" in result.output
    password = result.output.split("password:")[1].split()[0]
    client = app.test_client()
    response = client.post("/login", data={"username": "admin", "password": password,
                                           "csrf_token": form_token(client, "/login")})
    assert response.status_code == 302
    again = runner.invoke(args=["setup"])
    assert again.exit_code == 0 and "password" not in again.output


def test_a_deleted_accounts_token_and_session_are_not_inherited(app, tokens):
    from web.db import db
    from web.records import User

    browser = login(app.test_client(), "dan")
    with app.app_context():
        database = db.engine.url.database
        dan = db.session.execute(db.select(User).filter_by(username="dan")).scalar_one()
        old_id = dan.id
    with sqlite3.connect(database) as by_hand:           # the sqlite3 shell: foreign keys off, no cascade
        by_hand.execute("DELETE FROM user WHERE id = ?", (old_id,))
    make_user(app, "eve", "admin")
    with app.app_context():
        assert db.session.execute(db.select(User).filter_by(username="eve")).scalar_one().id != old_id
    assert app.test_client().get("/api/v1/datasets", headers=bearer_headers(tokens["doctor"])).status_code == 401
    assert browser.get("/admin/datasets").status_code == 302


def test_deleting_an_account_deletes_its_tokens(app, tokens):
    from web.db import db
    from web.records import ApiToken, User

    with app.app_context():
        db.session.execute(db.delete(User).where(User.username == "dan"))
        db.session.commit()
        owners = db.session.execute(db.select(ApiToken.user_id)).scalars().all()
        assert owners == [db.session.execute(db.select(User.id).filter_by(username="ada")).scalar_one()]


def test_the_login_limit_holds_under_concurrent_guesses(app, tokens):
    checked, statuses = concurrent_wrong_logins(app, "dan", 40)
    assert checked == 5 and statuses == [401] * 5 + [429] * 35


def test_guesses_from_one_address_do_not_lock_the_account_elsewhere(client, tokens):
    def attempt(password, address):
        return client.post("/login", data={"username": "dan", "password": password,
                                           "csrf_token": form_token(client, "/login")},
                           environ_base={"REMOTE_ADDR": address})

    assert [attempt("not the password", "203.0.113.9").status_code for _ in range(6)] == [401] * 5 + [429]
    assert attempt(PASSWORD, "203.0.113.9").status_code == 429
    assert attempt(PASSWORD, "10.1.2.3").status_code == 302


def test_an_account_wide_limit_stops_guesses_spread_over_many_addresses(client, tokens, monkeypatch):
    from web.accounts import auth

    monkeypatch.setattr(auth, "PER_ACCOUNT", auth.Limit(attempts=8, window=timedelta(hours=1)))

    def attempt(password, address):
        return client.post("/login", data={"username": "dan", "password": password,
                                           "csrf_token": form_token(client, "/login")},
                           environ_base={"REMOTE_ADDR": address}).status_code

    assert [attempt("not the password", f"198.51.100.{n}") for n in range(10)] == [401] * 8 + [429] * 2
    assert attempt(PASSWORD, "10.1.2.3") == 429
    assert attempt(PASSWORD, "10.1.2.3") == 429
    assert login(client, "ada").get("/admin/models").status_code == 200


def test_a_successful_login_does_not_count_towards_the_account_wide_limit(client, tokens, monkeypatch):
    from web.accounts import auth

    monkeypatch.setattr(auth, "PER_ACCOUNT", auth.Limit(attempts=2, window=timedelta(hours=1)))
    for _ in range(4):
        login(client, "dan")


@contextmanager
def full_disk(app):
    """Make every write to the database fail as SQLite's do when the disk is full."""
    from web.db import db

    def refuse(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def test_a_login_on_a_full_disk_gets_a_clear_answer(client, tokens):
    with full_disk(client.application):
        response = client.post("/login", data={"username": "dan", "password": "not the password",
                                               "csrf_token": form_token(client, "/login")})
    assert response.status_code == 507 and "disk is full" in response.get_data(as_text=True)
    assert login(client, "dan").get("/").status_code == 200


def test_nginx_may_let_an_archive_through_only_from_an_administrator(app, client, tokens):
    def check(who, method="POST", headers=None):
        return who.get("/auth/upload-allowed", headers={"X-Original-Method": method, **(headers or {})}).status_code
    assert check(client) == 401 and check(client, "GET") == 204              # reading is the app's to decide
    assert check(client, headers=bearer_headers(tokens["doctor"])) == 403
    assert check(client, headers=bearer_headers(tokens["admin"])) == 204
    assert check(client, headers=bearer_headers("forged")) == 401
    assert check(login(app.test_client(), "dan")) == 403
    assert check(login(app.test_client(), "ada")) == 204
