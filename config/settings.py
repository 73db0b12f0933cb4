"""One typed settings object, read from the environment once.

Each setting is declared once: its field, its environment variable, how the variable's text
is read, and its default. `Settings.from_env()` reads every variable that is set and not
empty; the others keep their defaults.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from config.database_urls import login_as, sqlalchemy_url

DEFAULT_WEBHOOK_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
# Threads per API process that serve `GET /api/v1/health` alone, beside the
# `TALLY_API_THREADS` that serve everything else: a health check never waits in line
# behind the requests that keep those busy.
API_PROBE_THREADS = 2
# The roles the API's connections and its /metrics log in as (migrations 0005 and 0009).
API_ROLE = "tally_api"
MONITOR_ROLE = "tally_monitor"
FERNET_KEY_BYTES = 32


class SettingsError(ValueError):
    """A setting in the environment cannot be used."""


def _text(name: str, raw: str) -> str:
    return raw


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


def _schedule(name: str, raw: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated seconds, not {raw!r}") from None
    if not steps or any(step < 0 for step in steps):
        raise SettingsError(f"{name} must list one or more non-negative delays")
    return steps


def _fernet_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    for number, key in enumerate(keys, 1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            decoded = b""
        if len(decoded) != FERNET_KEY_BYTES:
            raise SettingsError(
                f"{name}: key {number} is not a Fernet key (32 url-safe base64 bytes;"
                " `tally webhook-secrets new-key` makes one)"
            )
    return keys


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "str": _text,
    "str | None": _text,
    "bool": _bool,
    "float": _number,
    "int": _int,
    "tuple[int, ...]": _schedule,
    "tuple[str, ...]": _fernet_keys,
}


def env(name: str, default: Any) -> Any:
    """A setting read from the environment variable `name`, else `default`."""
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    database_url: str | None = env("DATABASE_URL", None)
    # The API's and the metrics' own logins (docs/security.md#roles-and-logins); unset,
    # each is DATABASE_URL with the role as user and the password of the next settings.
    api_database_url: str | None = env("TALLY_API_DATABASE_URL", None)
    api_db_password: str | None = env("TALLY_API_DB_PASSWORD", None)
    monitor_database_url: str | None = env("TALLY_MONITOR_DATABASE_URL", None)
    monitor_db_password: str | None = env("TALLY_MONITOR_DB_PASSWORD", None)
    broker_url: str | None = env("BROKER_URL", None)
    queue: str = env("TALLY_QUEUE", "tally")
    metrics_token: str | None = env("TALLY_METRICS_TOKEN", None)
    relay_age_seconds: float = env("TALLY_RELAY_AGE_SECONDS", 3.0)
    relay_interval_seconds: float = env("TALLY_RELAY_INTERVAL_SECONDS", 1.0)
    # How often the relay seals the hash chains of tenants with new entries (ledger/seals.py).
    seal_interval_seconds: float = env("TALLY_SEAL_INTERVAL_SECONDS", 60.0)
    batch_size: int = env("TALLY_BATCH_SIZE", 200)
    # Under load the API sends at most one broker message per linger per process, carrying
    # every id accepted meanwhile (0: one message per submission).
    publish_linger_seconds: float = env("TALLY_PUBLISH_LINGER_SECONDS", 0.05)
    max_apply_attempts: int = env("TALLY_MAX_APPLY_ATTEMPTS", 5)
    max_wait_seconds: int = env("TALLY_MAX_WAIT_SECONDS", 30)
    max_metadata_bytes: int = env("TALLY_MAX_METADATA_BYTES", 4096)
    # How far in the past a submission's effective_at may be (30 days).
    max_backdate_seconds: int = env("TALLY_MAX_BACKDATE_SECONDS", 2_592_000)
    max_body_bytes: int = env("TALLY_MAX_BODY_BYTES", 1_048_576)
    webhook_allow_private_targets: bool = env("TALLY_WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    webhook_retry_schedule: tuple[int, ...] = env(
        "TALLY_WEBHOOK_RETRY_SCHEDULE", DEFAULT_WEBHOOK_RETRY_SCHEDULE
    )
    webhook_timeout_seconds: float = env("TALLY_WEBHOOK_TIMEOUT_SECONDS", 5.0)
    webhook_secret_overlap_seconds: int = env("TALLY_WEBHOOK_SECRET_OVERLAP_SECONDS", 86_400)
    webhook_concurrency: int = env("TALLY_WEBHOOK_CONCURRENCY", 32)
    # Fernet keys that seal webhook secrets at rest, newest first: the first seals, every
    # one opens (docs/security.md#webhook-secrets-at-rest).
    webhook_secret_keys: tuple[str, ...] = env("TALLY_WEBHOOK_SECRET_KEYS", ())
    # The serving layer (api/server.py): Flask threads per API process, and how long a
    # client may take to send its headers and its body before it is cut off.
    api_threads: int = env("TALLY_API_THREADS", 32)
    api_header_timeout_seconds: float = env("TALLY_API_HEADER_TIMEOUT_SECONDS", 10.0)
    api_body_timeout_seconds: float = env("TALLY_API_BODY_TIMEOUT_SECONDS", 10.0)
    # Long-polls parked at once per API process, and per tenant within it; beyond either,
    # `?wait` answers at once with the current state.
    long_polls_per_process: int = env("TALLY_LONG_POLLS_PER_PROCESS", 256)
    long_polls_per_tenant: int = env("TALLY_LONG_POLLS_PER_TENANT", 64)
    # How long an API process trusts a key it has looked up (revocations reach it sooner,
    # through LISTEN/NOTIFY); 0 looks every key up on every request.
    key_cache_seconds: float = env("TALLY_KEY_CACHE_SECONDS", 60.0)
    # Requests per second per API key, unless the tenant has its own limit; the manual
    # webhook routes (test event, recover, redeliver) per key per minute. Counts are shared
    # through Redis: TALLY_RATE_LIMIT_STORAGE_URL, else a redis:// BROKER_URL.
    rate_limit_per_second: int = env("TALLY_RATE_LIMIT_PER_SECOND", 500)
    rate_limit_storage_url: str | None = env("TALLY_RATE_LIMIT_STORAGE_URL", None)
    # How often an API process adds its local rate-limit counts to Redis (api/rate_limits.py).
    rate_limit_flush_seconds: float = env("TALLY_RATE_LIMIT_FLUSH_SECONDS", 0.02)
    webhook_manual_per_minute: int = env("TALLY_WEBHOOK_MANUAL_PER_MINUTE", 20)
    # How long a /metrics scrape's ledger-wide numbers are reused (they scan transactions).
    metrics_cache_seconds: float = env("TALLY_METRICS_CACHE_SECONDS", 15.0)
    # The operator console's sign-in (ledger/console_sessions.py): a session ends after this
    # long without a request, and in any case this long after sign-in.
    console_idle_seconds: int = env("TALLY_CONSOLE_IDLE_SECONDS", 1800)
    console_max_seconds: int = env("TALLY_CONSOLE_MAX_SECONDS", 43200)
    # How many reverse proxies in front of the API to believe: each adds its hop to
    # X-Forwarded-For and X-Forwarded-Proto. 0 ignores those headers, which anyone can send.
    trusted_proxies: int = env("TALLY_TRUSTED_PROXIES", 0)
    # Failed authentications per client address per minute (counted in each API process)
    # before the address is answered 429 without a key lookup.
    auth_failures_per_minute: int = env("TALLY_AUTH_FAILURES_PER_MINUTE", 100)

    def __post_init__(self) -> None:
        if self.trusted_proxies < 0:
            raise SettingsError("TALLY_TRUSTED_PROXIES must be 0 or more proxy hops")
        if self.auth_failures_per_minute < 1:
            raise SettingsError("TALLY_AUTH_FAILURES_PER_MINUTE must be 1 or more")

    @classmethod
    def from_env(cls) -> Settings:
        """Read every setting from the environment."""
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata["env"]
            raw = os.environ.get(name)
            if raw:
                values[setting.name] = PARSERS[str(setting.type)](name, raw)
        return cls(**values)

    def require_database_url(self) -> str:
        """The SQLAlchemy URL of the ledger database; fails clearly when it is not set."""
        if not self.database_url:
            raise SettingsError("DATABASE_URL is not set (tally dev starts an embedded one)")
        return sqlalchemy_url(self.database_url)

    def require_api_database_url(self) -> str:
        """The SQLAlchemy URL the API logs in with: TALLY_API_DATABASE_URL, else
        DATABASE_URL as the `tally_api` role with TALLY_API_DB_PASSWORD."""
        if self.api_database_url:
            return sqlalchemy_url(self.api_database_url)
        return login_as(self.require_database_url(), API_ROLE, self.api_db_password)

    def require_monitor_database_url(self) -> str:
        """The SQLAlchemy URL /metrics reads with: TALLY_MONITOR_DATABASE_URL, else
        DATABASE_URL as the `tally_monitor` role with TALLY_MONITOR_DB_PASSWORD."""
        if self.monitor_database_url:
            return sqlalchemy_url(self.monitor_database_url)
        return login_as(self.require_database_url(), MONITOR_ROLE, self.monitor_db_password)

    def require_webhook_secret_keys(self) -> tuple[str, ...]:
        """The keys that seal and open webhook secrets; fails clearly when none is set."""
        if not self.webhook_secret_keys:
            raise SettingsError(
                "TALLY_WEBHOOK_SECRET_KEYS is not set: webhook secrets are sealed with it"
                " (`tally webhook-secrets new-key` makes a key)"
            )
        return self.webhook_secret_keys

    def require_broker_url(self) -> str:
        """The Celery broker URL; fails clearly when it is not set."""
        if not self.broker_url:
            raise SettingsError("BROKER_URL is not set (tally dev starts an embedded Redis)")
        return self.broker_url
