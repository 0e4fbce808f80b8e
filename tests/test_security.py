"""Authentication and web security: rate limiting, cookies, sessions, headers."""
from tests.helpers import PASSWORD, form_token, login


def failed_login(client, name="dan"):
    return client.post("/login", data={"username": name, "password": "not the password",
                                       "csrf_token": form_token(client, "/login")})


def test_password_guessing_is_slowed_down(client, tokens):
    assert [failed_login(client).status_code for _ in range(5)] == [401] * 5
    blocked = failed_login(client)
    assert blocked.status_code == 429 and "Too many failed logins" in blocked.get_data(as_text=True)
    assert int(blocked.headers["Retry-After"]) > 0
    right = client.post("/login", data={"username": "dan", "password": PASSWORD,
                                        "csrf_token": form_token(client, "/login")})
    assert right.status_code == 429                     # even the right password waits
    assert login(client, "ada").get("/admin/models").status_code == 200     # other users are not locked out


def test_session_cookie_flags(app, client, tokens):
    response = client.post("/login", data={"username": "dan", "password": PASSWORD,
                                           "csrf_token": form_token(client, "/login")})
    cookies = response.headers.getlist("Set-Cookie")
    assert {cookie.split("=")[0] for cookie in cookies} == {"session", "facedx_device"}
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def from_address(app, address):
    """A test client whose requests come from `address`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_guesses_from_many_addresses_do_not_lock_the_owner_out_of_a_browser_they_used(app, tokens):
    """OWASP's device cookies: the account-wide limit stops the guessers, not the owner's own browser."""
    owners_browser = login(app.test_client(), "dan")
    owners_browser.post("/logout", data={"csrf_token": form_token(owners_browser, "/")})
    for number in range(11):                             # 11 addresses x 5 wrong guesses: over 50 an hour
        guesser = from_address(app, f"10.0.0.{number}")
        for _ in range(5):
            failed_login(guesser)
    stranger = from_address(app, "10.0.1.1")
    blocked = stranger.post("/login", data={"username": "dan", "password": PASSWORD,
                                            "csrf_token": form_token(stranger, "/login")})
    assert blocked.status_code == 429                    # a browser the account never used waits
    login(owners_browser, "dan")                         # the owner's browser keeps its own allowance
    forged = from_address(app, "10.0.1.2")
    forged.set_cookie("facedx_device", "a-cookie-nobody-signed")
    assert forged.post("/login", data={"username": "dan", "password": PASSWORD,
                                       "csrf_token": form_token(forged, "/login")}).status_code == 429
    mine = [failed_login(owners_browser).status_code for _ in range(6)]      # its own allowance is limited too
    assert mine == [401] * 5 + [429]


def test_cookies_are_secure_behind_https(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FACEDX_HTTPS", "1")
    from app import create_app
    assert create_app().config["SESSION_COOKIE_SECURE"] is True


def test_logout_voids_every_copy_of_the_session_cookie(app, tokens):
    browser = login(app.test_client(), "dan")
    stolen = app.test_client()
    stolen.set_cookie("session", browser.get_cookie("session").value)
    assert stolen.get("/").status_code == 200
    browser.post("/logout", data={"csrf_token": form_token(browser, "/")})
    assert stolen.get("/").status_code == 302            # the copied cookie no longer works


def test_logout_ends_this_browser_only_and_log_out_everywhere_ends_them_all(app, tokens):
    office, ward, phone = (login(app.test_client(), "dan") for _ in range(3))
    page = office.get("/").get_data(as_text=True)
    assert 'formaction="/logout/everywhere"' in page
    response = office.post("/logout", data={"csrf_token": form_token(office, "/")}, follow_redirects=True)
    assert "logged out in this browser" in response.get_data(as_text=True)
    assert office.get("/").status_code == 302 and ward.get("/").status_code == 200
    ward.post("/logout/everywhere", data={"csrf_token": form_token(ward, "/")})
    assert ward.get("/").status_code == 302 and phone.get("/").status_code == 302
    login(app.test_client(), "dan")                      # a new login works as ever


def test_logout_ends_the_session_even_when_the_disk_is_full(app, tokens):
    from tests.helpers import database_full

    browser = login(app.test_client(), "dan")
    token = form_token(browser, "/")
    with database_full(app, "ended_login"):
        response = browser.post("/logout", data={"csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200 and "disk is full" in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302           # this browser is logged out all the same
    everywhere = login(app.test_client(), "dan")
    with database_full(app, "user"):
        response = everywhere.post("/logout/everywhere", data={"csrf_token": form_token(everywhere, "/")})
    assert response.status_code == 302 and everywhere.get("/").status_code == 302


def test_security_headers_on_every_kind_of_response(client, tokens):
    for response in (client.get("/login"), client.get("/api/v1/health"), client.get("/no-such-page"),
                     client.get("/static/style.css")):
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_page_uses_inline_script(app, client, tokens, active_model):
    import re

    login(client, "ada")
    for path in ("/", "/admin/datasets", "/admin/training", "/admin/models", f"/admin/models/{active_model}",
                 "/admin/audit"):
        page = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", page), path          # no inline event handlers


def test_an_unexpected_errors_log_line_cannot_be_forged_by_its_path(app, caplog):
    @app.before_request
    def fails():                 # a defect on any path under /fails, whatever the route would say
        from flask import request

        if request.path.startswith("/fails/"):
            raise RuntimeError("a defect")
    with caplog.at_level("ERROR", logger="web.errors"):
        response = app.test_client().get("/fails/zz%0a127.0.0.1 FORGED line%0d%0a/x\\y")
    assert response.status_code == 500
    (record,) = [r for r in caplog.records if r.getMessage().startswith("unexpected error on")]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line
    assert line == "unexpected error on GET /fails/zz\\x0a127.0.0.1 FORGED line\\x0d\\x0a/x\\x5cy"
