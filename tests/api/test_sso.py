"""Single sign-on over real HTTP against a local stand-in identity server (OIDC and 浙政钉)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from geoserver.config import SsoSettings
from geoserver.services.sso import SsoRejected, ZhezhengdingProvider
from tests.conftest import make_settings, run_server
from tests.support.users import make_user

CLIENT_ID, CLIENT_SECRET = "gridgov-web", "oidc-client-secret"
APP_KEY, APP_SECRET = "gridgov-zzd", "zzd-app-secret"
#: One-time codes the stand-in knows: code → identity.
OIDC_CODES = {
    "code-alice": {"sub": "alice-sub", "preferred_username": "alice.w", "name": "王爱丽"},
    "code-alice-2": {"sub": "alice-sub", "preferred_username": "alice.w", "name": "王爱丽"},
    "code-stranger": {"sub": "stranger-sub", "preferred_username": "stranger", "name": "陌生人"},
    "code-forged": {"sub": "alice-sub", "id_token_sub": "mallory-sub"},
    "code-disabled": {"sub": "disabled-sub", "preferred_username": "gone"},
}
ZZD_CODES = {
    "auth-1": {"accountId": 289563688, "employeeCode": "GE_c30ffe52", "nickNameCn": "陈佳明"},
    "auth-2": {"accountId": 289563688, "employeeCode": "GE_c30ffe52", "nickNameCn": "陈佳明"},
}


def _signature(secret: str, headers: Any, path: str, params: dict[str, str]) -> str:
    """The gateway's check, written independently of gridgov's client."""
    text = "\n".join(["POST", headers["X-Hmac-Auth-Timestamp"], headers["X-Hmac-Auth-Nonce"],
                      path])
    if params:
        text += "\n" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
                            ).decode()


class StandIn(BaseHTTPRequestHandler):
    """A stand-in OIDC provider (/token, /userinfo) and 浙政钉 gateway (/gettoken.json, …)."""

    used: set[str] = set()
    calls: dict[str, int] = {}

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return None

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        return dict(parse_qsl(self.rfile.read(length).decode()))

    def _once(self, code: str, known: dict[str, Any]) -> Any:
        if code not in known or code in self.used:
            return None
        self.used.add(code)
        return known[code]

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.calls[self.path] = self.calls.get(self.path, 0) + 1
        form = self._form()
        if self.path == "/token":
            return self._token(form)
        if not self._signed(form):
            return self._send(200, {"success": False, "errorMsg": "signature mismatch"})
        if self.path == "/gettoken.json":
            ok = form == {"appkey": APP_KEY, "appsecret": APP_SECRET}
            return self._send(200, {"success": True, "content": {
                "success": ok, "data": {"accessToken": "zzd-app-token", "expiresIn": 7200}}})
        if self.path == "/rpc/oauth2/dingtalk_app_user.json":
            who = (self._once(form.get("auth_code", ""), ZZD_CODES)
                   if form.get("access_token") == "zzd-app-token" else None)
            if who is None:
                return self._send(200, {"success": True, "content": {
                    "success": False, "responseCode": "240111", "responseMessage": "授权码无效"}})
            return self._send(200, {"success": True, "content": {"success": True, "data": who}})
        return self._send(404, {"error": "not found"})

    def _signed(self, form: dict[str, str]) -> bool:
        if (self.headers.get("apiKey") != APP_KEY
                or self.headers.get("X-Hmac-Auth-Version") != "1.0"):
            return False
        datetime.fromisoformat(self.headers["X-Hmac-Auth-Timestamp"])
        expected = _signature(APP_SECRET, self.headers, self.path, form)
        return hmac.compare_digest(expected, self.headers.get("X-Hmac-Auth-Signature", ""))

    def _token(self, form: dict[str, str]) -> None:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {basic}":
            return self._send(401, {"error": "invalid_client"})
        who = self._once(form.get("code", ""), OIDC_CODES)
        if form.get("grant_type") != "authorization_code" or who is None:
            return self._send(400, {"error": "invalid_grant"})
        claims = json.dumps({"sub": who.get("id_token_sub", who["sub"])}).encode()
        id_token = "e30." + base64.urlsafe_b64encode(claims).decode().rstrip("=") + ".sig"
        return self._send(200, {"access_token": "at-" + form["code"], "token_type": "Bearer",
                                "id_token": id_token})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        code = self.headers.get("Authorization", "").removeprefix("Bearer at-")
        if self.path != "/userinfo" or code not in OIDC_CODES:
            return self._send(401, {"error": "invalid_token"})
        who = OIDC_CODES[code]
        return self._send(200, {k: v for k, v in who.items() if k != "id_token_sub"})


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    """The stand-in identity server on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def live_server(pg, module_db, idp) -> Iterator[str]:
    """The app with single sign-on pointed at the stand-in."""
    settings = make_settings(pg, module_db, jobs_enabled=False)
    settings.sso = SsoSettings(
        oidc_token_url=f"{idp}/token", oidc_userinfo_url=f"{idp}/userinfo",
        oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET,
        oidc_redirect_uri="https://gridgov.example/sso/callback",
        zzd_base_url=idp, zzd_app_key=APP_KEY, zzd_app_secret=APP_SECRET)
    with run_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def sysadm(module_engine):
    return make_user(module_engine, "sso_sysadm", roles=["admin"], scope=["330300"])


@pytest.fixture(scope="module")
def auditor(module_engine):
    return make_user(module_engine, "sso_auditor", roles=["audit_admin"], scope=["330300"])


def bind(http: httpx.Client, sysadm: Any, user_id: int, subject: str) -> httpx.Response:
    """Bind an external identity to an account through the admin API."""
    version = http.get(f"/api/v1/admin/users/{user_id}", headers=sysadm.headers).json()["version"]
    return http.patch(f"/api/v1/admin/users/{user_id}", headers=sysadm.headers,
                      json={"version": version, "external_subject": subject})


@pytest.fixture(scope="module")
def alice(module_engine, http, sysadm):
    user = make_user(module_engine, "alice_local", roles=["grid_worker"], scope=["330302006"])
    assert bind(http, sysadm, user.id, "oidc:alice-sub").status_code == 200
    return user


def sso(http: httpx.Client, provider: str, code: str) -> httpx.Response:
    return http.post(f"/api/v1/auth/sso/{provider}", json={"code": code})


def me_with_cookie(base: str, r: httpx.Response) -> httpx.Response:
    # Secure cookies are not sent over plain http by httpx; pass the session as a header.
    cookie = r.cookies.get("gridgov_session")
    with httpx.Client(base_url=base, headers={"Cookie": f"gridgov_session={cookie}"}) as c:
        return c.get("/api/v1/auth/me")


def test_oidc_login_opens_a_session_for_the_bound_account(http, live_server, alice,
                                                          auditor) -> None:
    r = sso(http, "oidc", "code-alice")
    assert r.status_code == 200, r.text
    assert r.json()["csrf_token"]
    set_cookie = ";".join(r.headers.get_list("set-cookie")).lower()
    assert "httponly" in set_cookie and "secure" in set_cookie
    me = me_with_cookie(live_server, r)
    assert me.status_code == 200 and me.json()["username"] == "alice_local"
    assert "grid_worker" in me.json()["roles"]
    rows = http.get("/api/v1/admin/audit", headers=auditor.headers,
                    params={"action": "login.success", "object_id": str(alice.id)}).json()
    assert rows["items"][0]["detail"]["subject"] == "oidc:alice-sub"


def test_unknown_subject_is_refused_and_gets_no_account(http, sysadm, auditor) -> None:
    r = sso(http, "oidc", "code-stranger")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    found = http.get("/api/v1/admin/users", headers=sysadm.headers,
                     params={"q": "stranger"}).json()["items"]
    assert found == []
    rows = http.get("/api/v1/admin/audit", headers=auditor.headers,
                    params={"action": "login.failure", "limit": 5}).json()["items"]
    assert any(x["detail"].get("subject") == "oidc:stranger-sub" for x in rows)


def test_bad_or_reused_code_is_401(http, alice) -> None:
    assert sso(http, "oidc", "no-such-code").status_code == 401
    assert sso(http, "oidc", "code-alice-2").status_code == 200
    assert sso(http, "oidc", "code-alice-2").status_code == 401
    assert sso(http, "oidc", "").status_code == 422
    assert sso(http, "oidc", "code\x00alice").status_code == 422


def test_id_token_naming_someone_else_is_refused(http, alice) -> None:
    assert sso(http, "oidc", "code-forged").status_code == 401


def test_disabled_account_cannot_sign_on(http, module_engine, sysadm) -> None:
    gone = make_user(module_engine, "gone_local", roles=["viewer"], scope=["330302006"])
    assert bind(http, sysadm, gone.id, "oidc:disabled-sub").status_code == 200
    assert http.post(f"/api/v1/admin/users/{gone.id}/disable",
                     headers=sysadm.headers).status_code == 200
    assert sso(http, "oidc", "code-disabled").status_code == 401


def test_one_identity_binds_one_account(http, module_engine, sysadm, alice) -> None:
    other = make_user(module_engine, "alice_twin", roles=["viewer"], scope=["330302006"])
    r = bind(http, sysadm, other.id, "oidc:alice-sub")
    assert r.status_code == 409
    assert bind(http, sysadm, other.id, "no-provider-prefix").status_code == 422


def test_zhezhengding_signed_exchange(http, live_server, module_engine, sysadm) -> None:
    worker = make_user(module_engine, "zzd_worker", roles=["grid_worker"], scope=["330302006"])
    assert bind(http, sysadm, worker.id, "zhezhengding:289563688").status_code == 200
    tokens_before = StandIn.calls.get("/gettoken.json", 0)
    first = sso(http, "zhezhengding", "auth-1")
    assert first.status_code == 200, first.text
    assert me_with_cookie(live_server, first).json()["username"] == "zzd_worker"
    assert sso(http, "zhezhengding", "auth-2").status_code == 200
    # The app access token is fetched once and reused until it expires.
    assert StandIn.calls.get("/gettoken.json", 0) - tokens_before <= 1
    assert sso(http, "zhezhengding", "auth-1").status_code == 401  # used already
    assert sso(http, "zhezhengding", "forged").status_code == 401


def test_zhezhengding_wrong_secret_fails_the_gateway_check(idp) -> None:
    provider = ZhezhengdingProvider(base_url=idp, app_key=APP_KEY, app_secret="not-the-secret")
    with pytest.raises(SsoRejected, match="signature"):
        provider.exchange("auth-unused")


def test_unconfigured_provider_is_404(http) -> None:
    assert sso(http, "wechat", "x").status_code == 404
