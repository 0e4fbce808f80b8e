import pytest

from tests.conftest import PASSWORD, form_token, login


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


def test_a_form_without_a_csrf_token_is_refused(client, tokens):
    response = client.post("/login", data={"username": "dan", "password": PASSWORD})
    assert response.status_code == 400
    login(client, "ada")
    assert client.post("/admin/models/rollback").status_code == 400
    assert client.post("/logout").status_code == 400


@pytest.mark.parametrize("path", ["/admin/datasets", "/admin/training", "/admin/models", "/admin/audit",
                                  "/admin/training/1.json"])
def test_doctors_cannot_reach_admin_pages(client, tokens, path):
    login(client, "dan")
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("target, expected", [
    ("/admin/models", "/admin/models"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\\\evil.example", "/"),
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
        from web.db import ApiToken, db
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
