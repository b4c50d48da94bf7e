"""Logins, sessions, CSRF, lockout and API tokens over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import sqlalchemy_url
from tests.support.users import make_user


@pytest.fixture(scope="module")
def alice(module_engine):
    return make_user(module_engine, "alice", roles=["analyst"])


def _login(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={"username": username, "password": password})


def _cookie_client(base: str, r: httpx.Response) -> Iterator[httpx.Client]:
    # Secure cookies are not sent over plain http by httpx; pass them as a header.
    session = r.cookies.get("gridgov_session")
    return httpx.Client(base_url=base, headers={"Cookie": f"gridgov_session={session}"})


def test_login_sets_hardened_cookies_and_me_works(http, live_server, alice) -> None:
    r = _login(http, "alice", alice.password)
    assert r.status_code == 200, r.text
    set_cookie = ";".join(r.headers.get_list("set-cookie")).lower()
    assert "gridgov_session=" in set_cookie and "httponly" in set_cookie
    assert "secure" in set_cookie and "samesite=lax" in set_cookie
    with _cookie_client(live_server, r) as c:
        me = c.get("/api/v1/auth/me").json()
    assert me["username"] == "alice" and "analyst" in me["roles"]
    assert "export" in me["permissions"]


def test_wrong_password_is_401_problem(http, alice) -> None:
    r = _login(http, "alice", "not-her-password")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _login(http, "nobody-here", "whatever").status_code == 401


def test_anonymous_me_is_401(http) -> None:
    assert http.get("/api/v1/auth/me").status_code == 401


def test_csrf_required_for_cookie_writes(http, live_server, alice) -> None:
    r = _login(http, "alice", alice.password)
    csrf = r.json()["csrf_token"]
    with _cookie_client(live_server, r) as c:
        refused = c.post("/api/v1/auth/tokens", json={"name": "x"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        wrong = c.post("/api/v1/auth/tokens", json={"name": "x"},
                       headers={"X-CSRF-Token": "forged"})
        assert wrong.status_code == 403
        ok = c.post("/api/v1/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201, ok.text


def test_logout_ends_the_session(http, live_server, alice) -> None:
    r = _login(http, "alice", alice.password)
    with _cookie_client(live_server, r) as c:
        assert c.get("/api/v1/auth/me").status_code == 200
        out = c.post("/api/v1/auth/logout", headers={"X-CSRF-Token": r.json()["csrf_token"]})
        assert out.status_code == 204
        assert c.get("/api/v1/auth/me").status_code == 401


def test_token_works_and_revocation_is_immediate(http, module_engine) -> None:
    bob = make_user(module_engine, "bob", roles=["viewer"])
    assert http.get("/api/v1/auth/me", headers=bob.headers).json()["username"] == "bob"
    created = http.post("/api/v1/auth/tokens", headers=bob.headers,
                        json={"name": "qgis", "days": 30, "permissions": ["region.read"]})
    assert created.status_code == 201
    tok = {"Authorization": f"Bearer {created.json()['token']}"}
    assert http.get("/api/v1/auth/me", headers=tok).json()["permissions"] == ["region.read"]
    listed = http.get("/api/v1/auth/tokens", headers=bob.headers).json()
    assert all("token_hash" not in t for t in listed)
    assert http.delete(f"/api/v1/auth/tokens/{created.json()['id']}",
                       headers=bob.headers).status_code == 204
    assert http.get("/api/v1/auth/me", headers=tok).status_code == 401


def test_token_cannot_exceed_holder_permissions(http, module_engine) -> None:
    carol = make_user(module_engine, "carol", roles=["viewer"])
    r = http.post("/api/v1/auth/tokens", headers=carol.headers,
                  json={"name": "x", "permissions": ["person.read_sensitive"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "permissions"


def test_lockout_after_repeated_failures(http, module_engine) -> None:
    make_user(module_engine, "dave", roles=["viewer"])
    for _ in range(5):
        assert _login(http, "dave", "bad-password-x").status_code == 401
    locked = _login(http, "dave", "Wenzhou-grid-2026!")
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    with module_engine.connect() as conn:
        conn.execute(text("SELECT set_config('gridgov.scope', '{\"\"}', false)"))
        actions = conn.execute(text(
            "SELECT action FROM audit_log WHERE detail->>'username' = 'dave' ORDER BY id"
        )).scalars().all()
    assert actions.count("login.failure") == 5 and actions[-1] == "login.locked"


def test_revoke_all_ends_every_session_and_token(http, live_server, module_engine) -> None:
    erin = make_user(module_engine, "erin", roles=["viewer"])
    r = _login(http, "erin", erin.password)
    assert http.post("/api/v1/auth/sessions/revoke-all", headers=erin.headers).status_code == 204
    assert http.get("/api/v1/auth/me", headers=erin.headers).status_code == 401
    with _cookie_client(live_server, r) as c:
        assert c.get("/api/v1/auth/me").status_code == 401


def test_password_change_checks_policy(http, module_engine) -> None:
    frank = make_user(module_engine, "frank", roles=["viewer"])
    weak = http.post("/api/v1/auth/password", headers=frank.headers,
                     json={"old_password": frank.password, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "password"
    wrong = http.post("/api/v1/auth/password", headers=frank.headers,
                      json={"old_password": "nope", "new_password": "Another-Strong-99"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "old_password"
    ok = http.post("/api/v1/auth/password", headers=frank.headers,
                   json={"old_password": frank.password, "new_password": "Another-Strong-99"})
    assert ok.status_code == 204
    assert _login(http, "frank", "Another-Strong-99").status_code == 200


def test_audit_log_is_append_only_for_the_app(pg, module_db) -> None:
    import psycopg2

    conn = psycopg2.connect(pg.url(APP_ROLE, module_db))
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("DELETE FROM audit_log")
        conn.rollback()
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute("UPDATE audit_log SET action = 'x'")
        conn.rollback()
    finally:
        conn.close()
    owner = psycopg2.connect(pg.url(OWNER_ROLE, module_db))
    try:
        with owner.cursor() as cur:
            with pytest.raises(psycopg2.Error):
                cur.execute("UPDATE audit_log SET action = 'x'")
        owner.rollback()
    finally:
        owner.close()


def test_credentials_are_touched_at_most_every_30_or_60_seconds(http, live_server, pg, module_db,
                                                                module_engine) -> None:
    """One statement resolves a credential and touches its clock, throttled as before."""
    carol = make_user(module_engine, "carol_touch", roles=["viewer"])
    owner = create_engine(sqlalchemy_url(pg.url(OWNER_ROLE, module_db)))

    def column(sql: str) -> object:
        with owner.begin() as conn:
            return conn.execute(text(sql), {"u": carol.id}).scalar_one()

    def write(sql: str) -> None:
        with owner.begin() as conn:
            conn.execute(text(sql), {"u": carol.id})

    token_used = "SELECT last_used_at FROM api_token WHERE user_id = :u"
    assert column(token_used) is None
    assert http.get("/api/v1/auth/me", headers=carol.headers).status_code == 200
    first = column(token_used)
    assert first is not None
    assert http.get("/api/v1/auth/me", headers=carol.headers).status_code == 200
    assert column(token_used) == first  # within 60 s: not written again
    write("UPDATE api_token SET last_used_at = now() - interval '2 minutes' "
          "WHERE user_id = :u")
    assert http.get("/api/v1/auth/me", headers=carol.headers).status_code == 200
    assert column(token_used) > first  # type: ignore[operator]

    r = _login(http, "carol_touch", carol.password)
    seen = "SELECT max(last_seen_at) FROM web_session WHERE user_id = :u AND revoked_at IS NULL"
    write("UPDATE web_session SET last_seen_at = now() - interval '40 seconds' "
          "WHERE user_id = :u")
    before = column(seen)
    with _cookie_client(live_server, r) as c:
        assert c.get("/api/v1/auth/me").json()["username"] == "carol_touch"
    assert column(seen) > before  # type: ignore[operator]
    # Past its idle limit the session is refused, and nothing is touched.
    write("UPDATE web_session SET last_seen_at = now() - interval '30 days' "
          "WHERE user_id = :u")
    stale = column(seen)
    with _cookie_client(live_server, r) as c:
        assert c.get("/api/v1/auth/me").status_code == 401
    assert column(seen) == stale
    owner.dispose()
