"""Configuration, read once from the environment.

Every setting has a default that runs on a developer's machine (services on
loopback). Secrets have no default: ``make up`` / ``make test`` generate them
into ``.env`` (git-ignored) on first run, and Flask's CLI and ``wsgi.py`` load
that file without overriding the real environment.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass, field
from datetime import timedelta

JWT_ALGORITHM = "HS256"  # pinned for signing and verifying: no "none", no RS/HS confusion


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _non_negative(name: str, default: float) -> float:
    raw = os.environ.get(name)
    value = default if raw in (None, "") else float(raw)
    if not value >= 0:  # NaN too
        raise ValueError(f"{name} must be a number of 0 or more, got {raw!r}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in raw.split(",") if p.strip())


def _derived_key(name: str, jwt_secret: str, purpose: bytes) -> bytes:
    """The key in ``name``, or one derived from the JWT secret for this purpose
    (never the secret itself)."""
    raw = os.environ.get(name)
    if raw:
        return raw.encode()
    return hmac.new(jwt_secret.encode(), purpose, hashlib.sha256).digest()


def _encryption_key(name: str, fallback: bytes, purpose: bytes) -> bytes:
    """A 256-bit key by HKDF-SHA256 (RFC 5869) from the secret in ``name``, or from
    ``fallback`` when it is unset (an ``.env`` written before ``name`` existed)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = os.environ.get(name, "").encode() or fallback
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(material)


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment; ``Settings.from_env()`` builds it."""

    database_url: str
    redis_url: str
    redis_prefix: str
    jwt_secret_key: str
    access_token_seconds: int
    refresh_token_seconds: int
    # Login throttling: failures per account / per client address in a window.
    login_max_failures_per_account: int
    login_max_failures_per_address: int
    login_window_seconds: int
    trusted_proxies: tuple = field(default_factory=tuple)
    cache_ttl_seconds: int = 300
    max_content_length: int = 1024 * 1024
    max_json_depth: int = 32  # arrays and objects in a request body nest at most this deep
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (CORS)
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    admin_email: str | None = None
    admin_password: str | None = None
    log_level: str = "INFO"
    hold_ttl_seconds: int = 360
    payment_window_seconds: int = 600
    idempotency_ttl_seconds: int = 86400
    max_seats_per_hold: int = 10
    cancellation_cutoff_minutes: int = 60
    expiry_interval_seconds: int = 5
    sweep_interval_seconds: int = 60
    reminder_interval_seconds: int = 5
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    amqp_prefix: str = "marquee."
    relay_interval_seconds: float = 1.0
    outbox_retention_days: float = 7.0  # published rows older than this are deleted (0: kept for ever)
    outbox_purge_interval_seconds: int = 3600
    retry_delays_ms: tuple = (1000, 5000, 30000)
    max_delivery_attempts: int = 5
    ticket_signing_key: bytes = b""  # HMAC of the codes issued before Ed25519 (they keep checking in)
    # AES-256-GCM key of the Ed25519 ticket keys' private halves in ticket_keys (HKDF of
    # TICKET_KEYS_ENCRYPTION_KEY, or of the ticket signing key when that is unset)
    ticket_keys_encryption_key: bytes = b""
    waitlist_offer_seconds: int = 300
    # wheelchair spaces and companion seats open to everyone this long before the show
    accessible_release_minutes: int = 120
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: str = "Marquee <tickets@marquee.test>"
    webhook_secret: bytes = b""
    webhook_tolerance_seconds: int = 300
    # Where clients reach Marquee (the proxy): absolute links in emails start here.
    public_base_url: str = "http://127.0.0.1:8000"
    # SMS and push providers (app.adapters.messaging): the sinks keep each message as a JSON file
    sms_provider: str = "sink"
    sms_sink_dir: str = "var/sms"
    push_provider: str = "sink"
    push_sink_dir: str = "var/push"
    # Password resets: how long a mailed token works, and how many requests a window
    # allows per email address and per client address (429 with Retry-After beyond).
    password_reset_ttl_seconds: int = 1800
    password_reset_max_per_email: int = 3
    password_reset_max_per_client: int = 20
    password_reset_window_seconds: int = 3600
    # Voucher codes: failed attempts a user may make in a window (429 with Retry-After beyond).
    voucher_max_failures: int = 10
    voucher_window_seconds: int = 900
    # Staff MFA (app.services.mfa): the TOTP secrets' sealing key, the issuer shown by
    # authenticator apps, how long a sign-in's mfa_token lasts and how many wrong codes
    # it takes; with require_staff_mfa, staff without a second factor cannot write.
    mfa_encryption_key: bytes = b""
    mfa_issuer: str = "Marquee"
    mfa_token_seconds: int = 300
    mfa_max_attempts: int = 5
    require_staff_mfa: bool = False
    # Outbound webhooks (app.services.outbound_webhooks)
    webhook_allow_private_urls: bool = False  # loopback/private receivers: tests and local setups only
    webhook_retry_delays: tuple = (1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)  # seconds; the last repeats
    webhook_max_attempts: int = 30  # a delivery is given up (failed) after this many attempts
    webhook_disable_after: int = 20  # consecutive failed attempts that disable a webhook
    webhook_timeout_seconds: float = 5.0
    webhook_poll_seconds: float = 1.0
    webhook_dispatch_threads: int = 2
    webhook_secrets_key: bytes = b""  # AES-256-GCM key of the stored signing secrets

    @classmethod
    def from_env(cls) -> "Settings":
        secret = os.environ.get("JWT_SECRET_KEY", "")
        if len(secret) < 32:
            raise RuntimeError(
                "JWT_SECRET_KEY is missing or shorter than 32 characters; "
                "run `make up` (it generates .env) or export one"
            )
        return cls(
            database_url=os.environ.get(
                "DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/marquee"
            ),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=os.environ.get("REDIS_PREFIX", "mq:"),
            jwt_secret_key=secret,
            access_token_seconds=_int("ACCESS_TOKEN_SECONDS", 900),
            refresh_token_seconds=_int("REFRESH_TOKEN_SECONDS", 30 * 86400),
            login_max_failures_per_account=_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5),
            login_max_failures_per_address=_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 50),
            login_window_seconds=_int("LOGIN_WINDOW_SECONDS", 900),
            trusted_proxies=_networks(os.environ.get("TRUSTED_PROXIES", "127.0.0.1/32,::1/128")),
            cache_ttl_seconds=_int("CACHE_TTL_SECONDS", 300),
            max_content_length=_int("MAX_CONTENT_LENGTH", 1024 * 1024),
            max_json_depth=_int("MAX_JSON_DEPTH", 32),
            cors_origins=tuple(o.strip().rstrip("/") for o in os.environ.get("CORS_ORIGINS", "").split(",")
                               if o.strip()),
            argon2_time_cost=_int("ARGON2_TIME_COST", 3),
            argon2_memory_kib=_int("ARGON2_MEMORY_KIB", 65536),
            argon2_parallelism=_int("ARGON2_PARALLELISM", 4),
            admin_email=os.environ.get("ADMIN_EMAIL") or None,
            admin_password=os.environ.get("ADMIN_PASSWORD") or None,
            log_level=os.environ.get("LOG_LEVEL", "INFO"),
            hold_ttl_seconds=_int("HOLD_TTL_SECONDS", 360),
            payment_window_seconds=_int("PAYMENT_WINDOW_SECONDS", 600),
            idempotency_ttl_seconds=_int("IDEMPOTENCY_TTL_SECONDS", 86400),
            max_seats_per_hold=_int("MAX_SEATS_PER_HOLD", 10),
            cancellation_cutoff_minutes=_int("CANCELLATION_CUTOFF_MINUTES", 60),
            expiry_interval_seconds=_int("EXPIRY_INTERVAL_SECONDS", 5),
            sweep_interval_seconds=_int("SWEEP_INTERVAL_SECONDS", 60),
            reminder_interval_seconds=_int("REMINDER_INTERVAL_SECONDS", 5),
            amqp_url=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            amqp_prefix=os.environ.get("AMQP_PREFIX", "marquee."),
            relay_interval_seconds=float(os.environ.get("RELAY_INTERVAL_SECONDS") or 1.0),
            outbox_retention_days=_non_negative("OUTBOX_RETENTION_DAYS", 7.0),
            outbox_purge_interval_seconds=_int("OUTBOX_PURGE_INTERVAL_SECONDS", 3600),
            retry_delays_ms=tuple(int(x) for x in os.environ.get("RETRY_DELAYS_MS", "1000,5000,30000").split(",")),
            max_delivery_attempts=_int("MAX_DELIVERY_ATTEMPTS", 5),
            ticket_signing_key=(ticket_key := _derived_key("TICKET_SIGNING_KEY", secret, b"marquee ticket signing")),
            ticket_keys_encryption_key=_encryption_key("TICKET_KEYS_ENCRYPTION_KEY", ticket_key,
                                                       b"marquee ticket keys at rest v1"),
            waitlist_offer_seconds=_int("WAITLIST_OFFER_SECONDS", 300),
            accessible_release_minutes=_int("ACCESSIBLE_RELEASE_MINUTES", 120),
            smtp_host=os.environ.get("SMTP_HOST", "127.0.0.1"),
            smtp_port=_int("SMTP_PORT", 8025),
            smtp_starttls=_bool("SMTP_STARTTLS", False),
            smtp_username=os.environ.get("SMTP_USERNAME") or None,
            smtp_password=os.environ.get("SMTP_PASSWORD") or None,
            mail_from=os.environ.get("MAIL_FROM", "Marquee <tickets@marquee.test>"),
            sms_provider=os.environ.get("SMS_PROVIDER", "sink"),
            sms_sink_dir=os.environ.get("SMS_SINK_DIR", "var/sms"),
            push_provider=os.environ.get("PUSH_PROVIDER", "sink"),
            push_sink_dir=os.environ.get("PUSH_SINK_DIR", "var/push"),
            webhook_secret=_derived_key("PAYMENT_WEBHOOK_SECRET", secret, b"marquee payment webhook"),
            webhook_tolerance_seconds=_int("WEBHOOK_TOLERANCE_SECONDS", 300),
            public_base_url=(os.environ.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            password_reset_ttl_seconds=_int("PASSWORD_RESET_TTL_SECONDS", 1800),
            password_reset_max_per_email=_int("PASSWORD_RESET_MAX_PER_EMAIL", 3),
            password_reset_max_per_client=_int("PASSWORD_RESET_MAX_PER_CLIENT", 20),
            password_reset_window_seconds=_int("PASSWORD_RESET_WINDOW_SECONDS", 3600),
            voucher_max_failures=_int("VOUCHER_MAX_FAILURES", 10),
            voucher_window_seconds=_int("VOUCHER_WINDOW_SECONDS", 900),
            mfa_encryption_key=_encryption_key("MFA_ENCRYPTION_KEY", secret.encode(), b"marquee mfa secrets at rest v1"),
            mfa_issuer=os.environ.get("MFA_ISSUER") or "Marquee",
            mfa_token_seconds=_int("MFA_TOKEN_SECONDS", 300),
            mfa_max_attempts=_int("MFA_MAX_ATTEMPTS", 5),
            require_staff_mfa=_bool("REQUIRE_STAFF_MFA", False),
            webhook_allow_private_urls=_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False),
            webhook_retry_delays=tuple(float(x) for x in os.environ.get(
                "WEBHOOK_RETRY_DELAYS", "1,5,30,120,600,3600").split(",") if x.strip()),
            webhook_max_attempts=_int("WEBHOOK_MAX_ATTEMPTS", 30),
            webhook_disable_after=_int("WEBHOOK_DISABLE_AFTER", 20),
            webhook_timeout_seconds=float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS") or 5.0),
            webhook_poll_seconds=float(os.environ.get("WEBHOOK_POLL_SECONDS") or 1.0),
            webhook_dispatch_threads=_int("WEBHOOK_DISPATCH_THREADS", 2),
            webhook_secrets_key=hashlib.sha256(_derived_key("WEBHOOK_SECRETS_KEY", secret,
                                                            b"marquee outbound webhook secrets")).digest(),
        )

    def engine_options(self) -> dict:
        """SQLAlchemy engine options: a pool of a bounded size, whose connections are checked
        before each use without a round trip (``db.replace_closed_connections``)."""
        return {
            "pool_size": _int("DB_POOL_SIZE", 5),
            "max_overflow": _int("DB_MAX_OVERFLOW", 10),
            "connect_args": {"connect_timeout": 5, "application_name": "marquee"},
        }

    def flask_config(self) -> dict:
        """The Flask / extension keys derived from these settings."""
        return {
            "JWT_SECRET_KEY": self.jwt_secret_key,
            "JWT_ALGORITHM": JWT_ALGORITHM,
            "JWT_DECODE_ALGORITHMS": [JWT_ALGORITHM],
            "JWT_TOKEN_LOCATION": ["headers"],
            "JWT_ACCESS_TOKEN_EXPIRES": timedelta(
                seconds=self.access_token_seconds
            ),
            "JWT_REFRESH_TOKEN_EXPIRES": timedelta(
                seconds=self.refresh_token_seconds
            ),
            "JWT_ERROR_MESSAGE_KEY": "detail",
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "API_TITLE": "Marquee",
            "API_VERSION": "v1",
            "OPENAPI_VERSION": "3.0.3",
            "OPENAPI_URL_PREFIX": "/",
            "OPENAPI_JSON_PATH": "openapi.json",
            "OPENAPI_SWAGGER_UI_PATH": "docs",
            "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
            "ETAG_DISABLED": False,
            "PROPAGATE_EXCEPTIONS": False,
        }
