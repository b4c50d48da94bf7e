"""Settings, one pydantic-settings class per concern, all with the prefix ``GRIDGOV_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The governance day, week, month and office hours are Shanghai's, whatever the server's zone.
GOVERNANCE_TZ = ZoneInfo("Asia/Shanghai")

_ENV = SettingsConfigDict(env_prefix="GRIDGOV_", extra="ignore")


class DatabaseSettings(BaseSettings):
    """Where the data lives: an embedded cluster under ``data_dir`` or an external server."""

    model_config = _ENV

    data_dir: Path = Path(".gridgov")
    #: Owner (migration) connection. Unset: gridgov runs its own cluster under ``data_dir``.
    database_url: str | None = None
    #: The app role's connection (not the owner, NOBYPASSRLS). Derived when unset.
    app_database_url: str | None = None
    pool_size: int = Field(default=8, ge=1, le=200)
    statement_timeout_ms: int = Field(default=30_000, ge=100)
    #: OS user the embedded cluster runs as when gridgov is started as root.
    cluster_os_user: str = "postgres"


class ServerSettings(BaseSettings):
    """How the HTTP server behaves."""

    model_config = _ENV

    env: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    jobs_enabled: bool = True
    #: Directory of the static web client, served at ``/``.
    web_dir: Path = Path(__file__).resolve().parent.parent / "web_map"
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)


class SecuritySettings(BaseSettings):
    """Secrets and keys; production refuses to start with the development defaults."""

    model_config = _ENV

    env: Literal["development", "test", "production"] = "development"
    secret_key: str = "dev-insecure-secret-key-change-me"
    #: base64 keys for the personal-data cipher, ``id:key,id:key``; the first is active.
    data_keys: str = "dev:ZGV2LWluc2VjdXJlLWRhdGEta2V5LTMyLWJ5dGVzISE="
    cipher: Literal["aes-gcm", "sm4"] = "aes-gcm"
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    #: Failed logins before the account locks; each further failure doubles the lock.
    lock_after_failures: int = Field(default=5, ge=1, le=100)
    lock_seconds: int = Field(default=60, ge=1)
    #: Secure cookies need HTTPS (browsers exempt 127.0.0.1 and localhost).
    cookie_secure: bool = True
    token_max_days: int = Field(default=365, ge=1)

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> SecuritySettings:
        if self.env == "production" and (
            self.secret_key.startswith("dev-") or self.data_keys.startswith("dev:")
        ):
            raise ValueError(
                "production mode refuses the development secrets: set GRIDGOV_SECRET_KEY "
                "and GRIDGOV_DATA_KEYS"
            )
        return self


class SsoSettings(BaseSettings):
    """Single sign-on providers (an OIDC provider, 浙政钉 免登); each is on when configured.

    Accounts are bound to an external identity by an administrator (``external_subject`` =
    ``<provider>:<subject>``); unknown identities are refused, never created.
    """

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_SSO_", extra="ignore")

    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: OIDC authorization-code exchange: the token and userinfo endpoints and the client.
    oidc_token_url: str | None = None
    oidc_userinfo_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_redirect_uri: str | None = None
    oidc_subject_claim: str = "sub"
    oidc_username_claim: str = "preferred_username"
    oidc_name_claim: str = "name"
    #: 浙政钉 open-platform gateway (https://openplatform-pro.ding.zj.gov.cn in production).
    zzd_base_url: str | None = None
    zzd_app_key: str | None = None
    zzd_app_secret: str | None = None
    #: In-app 免登 (auth code from the JSAPI); scan login uses /rpc/oauth2/getuserinfo_bycode.json
    #: with the parameter ``code``.
    zzd_user_path: str = "/rpc/oauth2/dingtalk_app_user.json"
    zzd_code_param: str = "auth_code"
    #: The gateway's signature headers name the calling server's address.
    zzd_client_ip: str = "127.0.0.1"
    zzd_client_mac: str = "00:00:00:00:00:00"


class Settings(BaseSettings):
    """All settings, grouped by concern; pass this into factories."""

    model_config = _ENV

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    sso: SsoSettings = Field(default_factory=SsoSettings)
