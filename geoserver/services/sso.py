"""Single sign-on (单点登录): one provider interface, an OIDC provider and 浙政钉 免登.

A provider turns a one-time code from the browser into an :class:`ExternalIdentity` by
calling its identity server over the back channel. The identity is then matched to a local
account by ``app_user.external_subject`` (``<provider>:<subject>``), which an administrator
binds; an unknown identity is refused and never gets an account, let alone rights.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ, SecuritySettings, SsoSettings
from geoserver.services.audit import AuditContext, audit
from geoserver.services.auth import LoginFailure, LoginResult, open_session


class SsoRejected(Exception):  # noqa: N818 - reads as what happened
    """The identity server refused the code, or answered something we cannot trust."""


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the identity server says the user is."""

    subject: str
    username: str | None = None
    display_name: str | None = None


class AuthProvider(Protocol):
    """A single sign-on provider: exchanges a one-time code for the user's identity."""

    name: str

    def exchange(self, code: str) -> ExternalIdentity:
        """Exchange a one-time code for an identity; raise SsoRejected when refused."""
        ...


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise SsoRejected(f"{what} answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise SsoRejected(f"{what} did not answer JSON") from None
    if not isinstance(body, dict):
        raise SsoRejected(f"{what} did not answer a JSON object")
    return body


def _claim(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None or value == "" else str(value)


class OidcProvider:
    """OpenID Connect authorization-code exchange: token endpoint, then userinfo.

    The token comes straight from the identity server over TLS (OIDC Core 3.1.3.7), so the
    userinfo answer is trusted; when an ID token comes along its ``sub`` must match
    (OIDC Core 5.3.2). The browser side keeps ``state`` and PKCE.
    """

    name = "oidc"

    def __init__(self, *, token_url: str, userinfo_url: str, client_id: str,
                 client_secret: str, redirect_uri: str | None = None, timeout: float = 5.0,
                 subject_claim: str = "sub", username_claim: str = "preferred_username",
                 name_claim: str = "name") -> None:
        self.token_url = token_url
        self.userinfo_url = userinfo_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self.claims = (subject_claim, username_claim, name_claim)

    def exchange(self, code: str) -> ExternalIdentity:
        """Exchange an authorization code for the user's identity."""
        form = {"grant_type": "authorization_code", "code": code}
        if self.redirect_uri:
            form["redirect_uri"] = self.redirect_uri
        try:
            with httpx.Client(timeout=self.timeout) as client:
                tokens = _json(client.post(self.token_url, data=form,
                                           auth=(self.client_id, self.client_secret)),
                               "the token endpoint")
                access = tokens.get("access_token")
                if not isinstance(access, str) or not access:
                    raise SsoRejected("the token endpoint gave no access token")
                info = _json(client.get(self.userinfo_url,
                                        headers={"Authorization": f"Bearer {access}"}),
                             "the userinfo endpoint")
        except httpx.HTTPError as e:
            raise SsoRejected(f"the identity server is not reachable: {type(e).__name__}") from e
        return self._identity(info, tokens.get("id_token"))

    def _identity(self, info: Mapping[str, Any], id_token: object) -> ExternalIdentity:
        subject_claim, username_claim, name_claim = self.claims
        subject = _claim(info, subject_claim)
        if subject is None:
            raise SsoRejected(f"the userinfo answer has no {subject_claim!r}")
        if isinstance(id_token, str) and _id_token_subject(id_token) != subject:
            raise SsoRejected("the ID token and the userinfo answer name different users")
        return ExternalIdentity(subject, _claim(info, username_claim), _claim(info, name_claim))


def _id_token_subject(id_token: str) -> str | None:
    """Return the ``sub`` of a JWT's payload (unverified: it only cross-checks userinfo)."""
    try:
        payload = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return _claim(data, "sub") if isinstance(data, dict) else None


def zzd_signature(secret: str, method: str, timestamp: str, nonce: str, path: str,
                  params: Mapping[str, str]) -> str:
    """Return the 浙政钉 gateway signature: base64 HMAC-SHA256 over the canonical request.

    The signed text is ``METHOD\\nTIMESTAMP\\nNONCE\\nPATH`` followed, when there are
    parameters, by ``\\n`` and the parameters as ``k=v`` pairs sorted and joined by ``&``.
    """
    lines = [method, timestamp, nonce, path]
    if params:
        lines.append("&".join(f"{k}={params[k]}" for k in sorted(params)))
    digest = hmac.new(secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class ZhezhengdingProvider:
    """浙政钉 免登 (single sign-on inside the Zhejiang government work app).

    The H5 page gets a one-time auth code from the 浙政钉 JSAPI and posts it here; the server
    fetches an app access token (``/gettoken.json``, cached until it expires) and exchanges
    the code at the user-info endpoint (in-app ``/rpc/oauth2/dingtalk_app_user.json`` with
    ``auth_code``, or scan login ``/rpc/oauth2/getuserinfo_bycode.json`` with ``code``).
    Every call is signed with the app key and secret (``X-Hmac-Auth-*`` headers). The
    subject is the stable ``accountId``; ``employeeCode`` is kept as the username hint.
    """

    name = "zhezhengding"

    def __init__(self, *, base_url: str, app_key: str, app_secret: str,
                 user_path: str = "/rpc/oauth2/dingtalk_app_user.json",
                 code_param: str = "auth_code", client_ip: str = "127.0.0.1",
                 client_mac: str = "00:00:00:00:00:00", timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_key = app_key
        self.app_secret = app_secret
        self.user_path = user_path
        self.code_param = code_param
        self.client_ip = client_ip
        self.client_mac = client_mac
        self.timeout = timeout
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def _headers(self, path: str, params: Mapping[str, str]) -> dict[str, str]:
        now = datetime.now(GOVERNANCE_TZ)
        timestamp = now.isoformat(timespec="milliseconds")
        nonce = f"{int(now.timestamp() * 1000)}{secrets.randbelow(10_000):04d}"
        return {
            "X-Hmac-Auth-Timestamp": timestamp, "X-Hmac-Auth-Version": "1.0",
            "X-Hmac-Auth-Nonce": nonce, "apiKey": self.app_key,
            "X-Hmac-Auth-Signature": zzd_signature(self.app_secret, "POST", timestamp, nonce,
                                                   path, params),
            "X-Hmac-Auth-IP": self.client_ip, "X-Hmac-Auth-MAC": self.client_mac,
            "Content-Type": "application/x-www-form-urlencoded",
        }

    def _call(self, client: httpx.Client, path: str, params: dict[str, str]) -> dict[str, Any]:
        body = _json(client.post(self.base_url + path, content=urlencode(params),
                                 headers=self._headers(path, params)), path)
        content = body.get("content")
        if not body.get("success") or not isinstance(content, dict) or not content.get("success"):
            message = content.get("responseMessage") if isinstance(content, dict) else None
            raise SsoRejected(f"{path} refused: {message or body.get('errorMsg') or 'no reason'}")
        data = content.get("data")
        if not isinstance(data, dict):
            raise SsoRejected(f"{path} answered no data")
        return data

    def _access_token(self, client: httpx.Client) -> str:
        with self._lock:
            if self._token and self._token[1] > time.monotonic():
                return self._token[0]
            data = self._call(client, "/gettoken.json",
                              {"appkey": self.app_key, "appsecret": self.app_secret})
            token = data.get("accessToken")
            if not isinstance(token, str) or not token:
                raise SsoRejected("/gettoken.json gave no access token")
            # Renew a minute early so a token never expires between check and use.
            lifetime = max(0, int(data.get("expiresIn") or 7200) - 60)
            self._token = (token, time.monotonic() + lifetime)
            return token

    def exchange(self, code: str) -> ExternalIdentity:
        """Exchange a 免登 auth code for the user's accountId and name."""
        try:
            with httpx.Client(timeout=self.timeout) as client:
                token = self._access_token(client)
                data = self._call(client, self.user_path,
                                  {"access_token": token, self.code_param: code})
        except httpx.HTTPError as e:
            raise SsoRejected(f"the 浙政钉 gateway is not reachable: {type(e).__name__}") from e
        subject = _claim(data, "accountId")
        if subject is None:
            raise SsoRejected("the 浙政钉 answer has no accountId")
        return ExternalIdentity(subject, _claim(data, "employeeCode") or _claim(data, "account"),
                                _claim(data, "nickNameCn") or _claim(data, "lastName"))


def providers_from_settings(settings: SsoSettings) -> dict[str, AuthProvider]:
    """Build the configured providers, by name (a provider missing any setting is off)."""
    providers: dict[str, AuthProvider] = {}
    s = settings
    if s.oidc_token_url and s.oidc_userinfo_url and s.oidc_client_id and s.oidc_client_secret:
        providers[OidcProvider.name] = OidcProvider(
            token_url=s.oidc_token_url, userinfo_url=s.oidc_userinfo_url,
            client_id=s.oidc_client_id, client_secret=s.oidc_client_secret,
            redirect_uri=s.oidc_redirect_uri, timeout=s.timeout_seconds,
            subject_claim=s.oidc_subject_claim, username_claim=s.oidc_username_claim,
            name_claim=s.oidc_name_claim)
    if s.zzd_base_url and s.zzd_app_key and s.zzd_app_secret:
        providers[ZhezhengdingProvider.name] = ZhezhengdingProvider(
            base_url=s.zzd_base_url, app_key=s.zzd_app_key, app_secret=s.zzd_app_secret,
            user_path=s.zzd_user_path, code_param=s.zzd_code_param, client_ip=s.zzd_client_ip,
            client_mac=s.zzd_client_mac, timeout=s.timeout_seconds)
    return providers


def external_subject(provider: AuthProvider, identity: ExternalIdentity) -> str:
    """Return the key an account is bound by: ``<provider>:<subject>``."""
    return f"{provider.name}:{identity.subject}"


def sso_login(session: Session, *, provider: AuthProvider, code: str,
              settings: SecuritySettings, context: AuditContext) -> LoginResult | LoginFailure:
    """Log in with a provider's one-time code: the bound, active account gets a session.

    Failures (a refused code, an identity bound to no account, a disabled account) are
    returned and audited, not raised, so the caller commits the audit row.
    """
    try:
        identity = provider.exchange(code)
    except SsoRejected as e:
        audit(session, actor=None, action="login.failure", object_kind="user", context=context,
              success=False, detail={"provider": provider.name, "reason": str(e)[:200]})
        return LoginFailure()
    subject = external_subject(provider, identity)
    row = session.execute(text("SELECT * FROM gridgov_meta.user_for_subject(:s)"),
                          {"s": subject}).first()
    ok = row is not None and bool(row.is_active)
    if row is not None and ok:
        session.execute(text("SELECT * FROM gridgov_meta.record_login(:i, true, :n, :s)"),
                        {"i": row.id, "n": settings.lock_after_failures,
                         "s": settings.lock_seconds})
    audit(session, actor=None, action="login.success" if ok else "login.failure",
          object_kind="user", object_id=str(row.id) if row else None, context=context,
          success=ok, detail={"provider": provider.name, "subject": subject,
                              "reason": None if ok else "unbound or inactive account"})
    if not ok or row is None:
        return LoginFailure()
    return open_session(session, user_id=row.id, settings=settings, context=context)
