"""Settings, one pydantic-settings class per concern, all with the prefix ``GRIDGOV_``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from geoserver.domain.clock import OfficeHours
    from geoserver.domain.tracks import IngestLimits, TrackRules

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


class PhotoSettings(BaseSettings):
    """Photo evidence (现场照片): limits and quotas of the store under ``data_dir``.

    Prefix ``GRIDGOV_PHOTO_``. Bytes count the original plus its thumbnail and served copy.
    """

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_PHOTO_", extra="ignore")

    #: One photo's upload; the phone resizes to ~250 kB, a camera original is ~4 MB.
    max_photo_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    #: Larger canvases are refused before decoding (a small file can claim a huge image).
    max_pixels: int = Field(default=40_000_000, ge=10_000, le=200_000_000)
    max_photos_per_request: int = Field(default=6, ge=1, le=50)
    #: All photos of one event, every stage together.
    max_event_bytes: int = Field(default=60 * 1024 * 1024, ge=1024)
    #: One user's uploads in the last 24 hours.
    max_user_bytes_per_day: int = Field(default=500 * 1024 * 1024, ge=1024)
    #: The whole store (distinct files).
    quota_bytes: int = Field(default=50 * 1024**3, ge=1024 * 1024)
    thumbnail_px: int = Field(default=320, ge=64, le=1024)
    thumbnail_quality: int = Field(default=80, ge=30, le=95)


class PartnerSettings(BaseSettings):
    """Partner platforms (接口管理: 110, 12345, 省矛调): signed requests and the status outbox."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_PARTNER_", extra="ignore")

    #: A signed request's timestamp may differ from the server's clock by at most this much.
    timestamp_window_seconds: int = Field(default=300, ge=30, le=3600)
    #: How long an Idempotency-Key's first response is kept and replayed.
    idempotency_hours: int = Field(default=48, ge=1, le=24 * 30)
    #: Larger partner request bodies are refused (413) before any work.
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    #: Status pushes: tries before a push goes to the dead-letter list, and the back-off
    #: (base × 2^(tries-1), capped) between tries.
    outbox_max_attempts: int = Field(default=8, ge=1, le=100)
    outbox_backoff_seconds: float = Field(default=30.0, ge=0, le=3600)
    outbox_backoff_max_seconds: float = Field(default=6 * 3600.0, ge=0)
    outbox_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: Pushes sent per run of the outbox job, and how often it runs.
    outbox_batch: int = Field(default=100, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(default=5.0, gt=0, le=3600)


class PatrolSettings(BaseSettings):
    """Patrols (网格巡查): ingest limits, cleaning and session rules, retention, exports.

    Prefix ``GRIDGOV_PATROL_``. Targets (daily mileage and duration per grid type) are data in
    the ``patrol_target`` table, edited through the API, not settings.
    """

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_PATROL_", extra="ignore")

    max_batch_points: int = Field(default=20_000, ge=1)
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_file_points: int = Field(default=200_000, ge=1)
    #: Points older than this, or further ahead than max_future_seconds, are refused.
    max_past_days: float = Field(default=366, gt=0)
    max_future_seconds: float = Field(default=300, ge=0)
    #: Raw points are kept this many Shanghai days, then summarised and dropped or archived.
    retention_days: int = Field(default=90, ge=1)
    #: drop: detach and drop expired partitions; archive: detach them into the gps_archive
    #: schema (out of the app's reach) for an operator to dump and drop.
    retention_action: Literal["drop", "archive"] = "drop"
    partitions_ahead_days: int = Field(default=3, ge=1, le=60)
    #: A worker is online with a fix in the last this many minutes.
    online_minutes: float = Field(default=5, gt=0)
    session_gap_minutes: float = Field(default=20, gt=0)
    #: The session job rebuilds a worker's open patrol at most once per this many seconds
    #: (phones upload every minute; records lag by up to this, live positions do not).
    session_settle_seconds: float = Field(default=600, ge=0, le=3600)
    gap_seconds: float = Field(default=120, gt=0)
    max_accuracy_m: float = Field(default=50, gt=0)
    jitter_radius_m: float = Field(default=15, gt=0)
    visit_radius_m: float = Field(default=30, gt=0)
    walk_max_speed_mps: float = Field(default=3.0, gt=0)
    ride_max_speed_mps: float = Field(default=10.0, gt=0)
    #: Export caps: records with their tracks (GPX, GeoJSON), and summary rows (CSV, xlsx).
    max_export_sessions: int = Field(default=5000, ge=1)
    max_export_rows: int = Field(default=100_000, ge=1)

    def limits(self) -> IngestLimits:
        """Return the ingest limits."""
        from geoserver.domain.tracks import IngestLimits  # see rules()

        return IngestLimits(self.max_batch_points, self.max_file_bytes, self.max_file_points,
                            self.max_past_days, self.max_future_seconds)

    def rules(self) -> TrackRules:
        """Return the cleaning and session rules."""
        # Imported here: every process imports config, and the track domain pulls in numpy,
        # shapely and h3.
        from geoserver.domain.tracks import TrackRules, TravelMode

        return TrackRules(
            max_accuracy_m=self.max_accuracy_m, jitter_radius_m=self.jitter_radius_m,
            gap_seconds=self.gap_seconds, session_gap_seconds=self.session_gap_minutes * 60,
            visit_radius_m=self.visit_radius_m,
            max_speed_mps={TravelMode.WALK: self.walk_max_speed_mps,
                           TravelMode.BICYCLE: self.ride_max_speed_mps})


class MessageSettings(BaseSettings):
    """Message-center limits and retention (prefix ``GRIDGOV_MESSAGES_``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_MESSAGES_", extra="ignore")

    #: Read messages are kept this many days, unread ones ``keep_days``.
    keep_read_days: int = Field(default=180, ge=1)
    keep_days: int = Field(default=730, ge=1)


class EventSettings(BaseSettings):
    """Event-center settings (prefix ``GRIDGOV_EVENT_``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_EVENT_", extra="ignore")

    #: Office hours for working-time clocks, Shanghai time.
    office_hours: str = "08:30-12:00,13:30-17:30"
    #: Share of a time limit after which a clock turns amber (预警).
    amber_share: float = Field(default=0.8, gt=0, lt=1)
    #: A point this close to a grid (in a gap, on water, just outside) goes to that grid.
    snap_tolerance_m: float = Field(default=300.0, ge=0, le=5000)
    #: On-site verification (核查) needs the verifier within this distance of the event.
    verify_distance_m: float = Field(default=200.0, gt=0, le=5000)
    #: Anonymous public reports (群众上报) per hour from one IP address (NAT: keep it generous)
    #: and for one phone number.
    public_reports_per_ip_per_hour: int = Field(default=20, ge=1, le=10_000)
    public_reports_per_phone_per_hour: int = Field(default=5, ge=1, le=1000)
    #: An export (导出) refuses more rows than this: narrow the filters.
    max_export_rows: int = Field(default=100_000, ge=1, le=5_000_000)

    @property
    def office(self) -> OfficeHours:
        """Return the parsed office hours."""
        from geoserver.domain.clock import OfficeHours

        return OfficeHours.parse(self.office_hours)


class Settings(BaseSettings):
    """All settings, grouped by concern; pass this into factories."""

    model_config = _ENV

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    sso: SsoSettings = Field(default_factory=SsoSettings)
    patrol: PatrolSettings = Field(default_factory=PatrolSettings)
    partners: PartnerSettings = Field(default_factory=PartnerSettings)
    photos: PhotoSettings = Field(default_factory=PhotoSettings)
    messages: MessageSettings = Field(default_factory=MessageSettings)
    events: EventSettings = Field(default_factory=EventSettings)
