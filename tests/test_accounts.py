"""Accounts: the IT administrator's commands and page (list, disable, enable, delete, tokens), and their upgrade."""
import re

import pytest

from tests.helpers import PASSWORD, audit_log, bearer_headers, form_token, login
from web.cli import cli_actor


def run(runner, *args, stdin=None):
    return runner.invoke(args=list(args), input=stdin, catch_exceptions=False)


def api_status(app, token):
    return app.test_client().get("/api/v1/datasets", headers=bearer_headers(token)).status_code


def test_user_commands_list_disable_enable_and_delete(app, runner, tokens):
    listed = run(runner, "user", "list").output.splitlines()
    assert [line.split("\t")[:4] for line in listed] == [["ada", "admin", "enabled", "1 token"],
                                                        ["dan", "doctor", "enabled", "1 token"]]
    browser = login(app.test_client(), "dan")

    result = run(runner, "user", "disable", "dan")
    assert result.exit_code == 0 and "1 API token revoked" in result.output
    assert "disabled since" in run(runner, "user", "list").output
    assert browser.get("/").status_code == 302                      # the session ended
    client = app.test_client()
    refused = client.post("/login", data={"username": "dan", "password": PASSWORD,
                                          "csrf_token": form_token(client, "/login")})
    assert refused.status_code == 403 and "disabled" in refused.get_data(as_text=True)

    assert run(runner, "user", "enable", "dan").exit_code == 0
    login(app.test_client(), "dan")

    assert run(runner, "user", "delete", "dan", stdin="n\n").exit_code == 1          # asks first
    assert run(runner, "user", "delete", "dan", "--yes").exit_code == 0
    assert [line.split("\t")[0] for line in run(runner, "user", "list").output.splitlines()] == ["ada"]
    assert run(runner, "user", "disable", "dan").exit_code == 1
    assert [action for who, action, _ in audit_log(app) if who == cli_actor()] == [
        "user.disable", "user.enable", "user.delete"]


def test_token_commands_list_and_revoke(app, runner, tokens):
    issued = run(runner, "token", "create", "dan").output
    assert issued.split()[-1] and run(runner, "token", "list").output.count("\tdan\t") == 2
    listed = run(runner, "token", "list", "ada").output.splitlines()
    assert len(listed) == 1 and listed[0].split("\t")[1] == "ada"
    ada_token_id = listed[0].split("\t")[0]
    assert tokens["admin"] not in run(runner, "token", "list").output          # only hashes are stored

    result = run(runner, "token", "revoke", ada_token_id)
    assert result.exit_code == 0 and api_status(app, tokens["admin"]) == 401
    assert api_status(app, issued.split()[-1]) == 403                          # the doctor's tokens still work
    for wrong in (ada_token_id, "0", "99999999999999999999999", "x"):
        assert run(runner, "token", "revoke", wrong).exit_code in (1, 2)
    assert run(runner, "token", "list", "nobody").exit_code == 1
    assert (cli_actor(), "token.revoke", f"{ada_token_id} of ada") in audit_log(app)


def test_a_token_whose_account_was_removed_outside_the_app_is_listed_and_revoked(app, runner, tokens):
    from sqlalchemy import text

    from web.db import db
    from web.records import ApiToken, User

    with app.app_context():
        dan = db.session.execute(db.select(User).filter_by(username="dan")).scalar_one()
        dan_id, token_id = dan.id, db.session.execute(db.select(ApiToken.id).filter_by(user_id=dan.id)).scalar_one()
        db.session.execute(text("PRAGMA foreign_keys=OFF"))           # as a database tool would remove it
        db.session.execute(text("DELETE FROM \"user\" WHERE id = :id"), {"id": dan_id})
        db.session.commit()
    assert f"{token_id}\tremoved account {dan_id}\t" in run(runner, "token", "list").output
    result = run(runner, "token", "revoke", str(token_id))
    assert result.exit_code == 0 and f"of removed account {dan_id}" in result.output
    assert str(token_id) not in [line.split("\t")[0] for line in run(runner, "token", "list").output.splitlines()]


def test_a_password_change_ends_sessions_and_tokens(app, runner, tokens):
    browser = login(app.test_client(), "ada")
    result = run(runner, "user", "password", "ada", stdin="another long password\n")
    assert result.exit_code == 0
    assert browser.get("/admin/models").status_code == 302
    assert api_status(app, tokens["admin"]) == 401
    assert api_status(app, tokens["doctor"]) == 403                             # other accounts keep theirs


def test_a_session_cookie_is_bound_to_the_account_not_only_its_id(app, tokens):
    from web.db import db
    from web.records import User

    browser = login(app.test_client(), "dan")
    with app.app_context():
        dan = db.session.execute(db.select(User).filter_by(username="dan")).scalar_one()
        dan.end_sessions()
        db.session.commit()
    assert browser.get("/").status_code == 302


@pytest.fixture
def admin(app, tokens):
    return login(app.test_client(), "ada")


def post(client, path):
    return client.post(path, data={"csrf_token": form_token(client, "/admin/users")})


def test_the_users_page_disables_enables_and_revokes_tokens(app, admin, tokens):
    page = admin.get("/admin/users").get_data(as_text=True)
    assert "dan" in page and "Revoke 1 token" in page
    doctor = login(app.test_client(), "dan")

    assert post(admin, "/admin/users/dan/disable").status_code == 302
    assert doctor.get("/").status_code == 302 and api_status(app, tokens["doctor"]) == 401
    assert "disabled" in admin.get("/admin/users").get_data(as_text=True)
    assert post(admin, "/admin/users/dan/enable").status_code == 302
    login(app.test_client(), "dan")

    assert post(admin, "/admin/users/ada/revoke-tokens").status_code == 302
    assert api_status(app, tokens["admin"]) == 401
    assert admin.get("/admin/users").status_code == 200                        # the session is not a token
    assert audit_log(app) == [("ada", "user.disable", "dan (1 token revoked)"), ("ada", "user.enable", "dan"),
                              ("ada", "token.revoke", "1 of ada")]


def test_the_users_page_refuses_to_disable_yourself_or_nobody(admin):
    response = post(admin, "/admin/users/ada/disable")
    assert response.status_code == 409 and "your own account" in response.get_data(as_text=True)
    assert post(admin, "/admin/users/ada/password").status_code == 409          # another administrator can
    assert post(admin, "/admin/users/nobody/disable").status_code == 404
    assert admin.get("/admin/users").status_code == 200


def test_an_existing_database_upgrades_and_forgets_tokens_of_deleted_accounts(tmp_path, monkeypatch):
    import sqlite3

    from flask_migrate import downgrade, upgrade

    from app import create_app
    from web.db import db
    from web.records import ApiToken

    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    app = create_app({"TESTING": True})
    with app.app_context():
        upgrade(revision="9f7699914d8d")
        database = db.engine.url.database
    with sqlite3.connect(database) as old:
        old.executemany("INSERT INTO user (id, username, password_hash, role, created_at, session_version) "
                        "VALUES (?, ?, 'x', ?, '2026-01-01', 3)", [(1, "ada", "admin"), (2, "dan", "doctor")])
        old.executemany("INSERT INTO api_token (user_id, token_hash, created_at) VALUES (?, ?, '2026-01-01')",
                        [(1, ApiToken.digest("ada's token")), (2, ApiToken.digest("dan's token"))])
        old.execute("DELETE FROM user WHERE id = 2")
    with app.app_context():
        upgrade()
        assert [(t.user.username, t.token_hash) for t in db.session.execute(db.select(ApiToken)).scalars()] == [
            ("ada", ApiToken.digest("ada's token"))]                  # rebuilding "user" cascaded nothing
    with sqlite3.connect(database) as new:
        assert "AUTOINCREMENT" in new.execute("SELECT sql FROM sqlite_master WHERE name = 'user'").fetchone()[0]
        assert new.execute("SELECT session_key FROM user").fetchone()[0]
    with app.app_context():
        downgrade(revision="9f7699914d8d")
        upgrade()


def set_password_with(client, link, password, repeat=None):
    """Open a set-password link and send the form; return the answer."""
    page = client.get(link)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    return client.post(link, data={"password": password, "repeat": repeat or password,
                                   "csrf_token": token.group(1) if token else ""})


def issued_secret(response):
    return re.search(r'id="issued-secret"[^>]*value="([^"]+)"', response.get_data(as_text=True)).group(1)


def test_the_users_page_creates_an_account_whose_owner_sets_the_password_once(app, admin):
    response = admin.post("/admin/users", data={"username": "newdoc", "role": "doctor",
                                                "csrf_token": form_token(admin, "/admin/users")})
    assert response.status_code == 201 and "Created the doctor account newdoc." in response.get_data(as_text=True)
    link = issued_secret(response)
    assert link.startswith("http://localhost/set-password?token=")
    assert "set-password" not in admin.get("/admin/users").get_data(as_text=True)     # shown once
    owner = app.test_client()
    assert "Set the password of newdoc" in owner.get(link).get_data(as_text=True)
    short = set_password_with(owner, link, "short")
    assert short.status_code == 400 and "at least 10 characters" in short.get_data(as_text=True)
    assert set_password_with(owner, link, "a long new password", "another one").status_code == 400
    assert set_password_with(owner, link, "a long new password").status_code == 302
    logged_in = owner.post("/login", data={"username": "newdoc", "password": "a long new password",
                                           "csrf_token": form_token(owner, "/login")})
    assert logged_in.status_code == 302
    used = app.test_client().get(link)
    assert used.status_code == 404 and "does not work" in used.get_data(as_text=True)    # once only
    assert app.test_client().get(link[:-3] + "abc").status_code == 404                    # tampered
    assert audit_log(app)[-2:] == [("ada", "user.create", "newdoc (doctor)"), ("newdoc", "user.password", "newdoc")]


@pytest.mark.parametrize("name, status, message", [("dan", 409, "already exists"), ("two words", 400, "letters")])
def test_the_users_page_refuses_a_taken_or_bad_name(admin, name, status, message):
    response = admin.post("/admin/users", data={"username": name, "role": "doctor",
                                                "csrf_token": form_token(admin, "/admin/users")})
    assert response.status_code == status and message in response.get_data(as_text=True)
    assert 'id="issued-secret"' not in response.get_data(as_text=True)


def test_a_reset_password_stops_working_at_once_and_a_new_token_is_shown_once(app, admin, tokens):
    doctor = login(app.test_client(), "dan")
    response = post(admin, "/admin/users/dan/password")
    assert response.status_code == 200 and "the old one no longer works" in response.get_data(as_text=True)
    assert doctor.get("/").status_code == 302 and api_status(app, tokens["doctor"]) == 401
    stranger = app.test_client()
    refused = stranger.post("/login", data={"username": "dan", "password": PASSWORD,
                                            "csrf_token": form_token(stranger, "/login")})
    assert refused.status_code == 401
    assert set_password_with(app.test_client(), issued_secret(response), "dan's new password").status_code == 302

    issued = post(admin, "/admin/users/dan/tokens")
    assert issued.status_code == 201 and "shown only this once" in issued.get_data(as_text=True)
    assert api_status(app, issued_secret(issued)) == 403          # a doctor's token, known: only not for datasets
    assert issued_secret(issued) not in admin.get("/admin/users").get_data(as_text=True)
    assert [row[1] for row in audit_log(app)[-3:]] == ["user.password", "user.password", "token.create"]


def test_dangerous_buttons_on_the_users_page_ask_first(admin):
    page = admin.get("/admin/users").get_data(as_text=True)
    for action, question in (("disable", "Disable dan? They are logged out in every browser, and their API tokens (1)"),
                             ("password", "Reset the password of dan?"), ("revoke-tokens", "Revoke the 1 API token")):
        form = re.search(rf'<form[^>]*action="/admin/users/dan/{action}"[^>]*>', page).group(0)
        assert f'data-confirm="{question}' in form.replace("&#39;", "'"), form
