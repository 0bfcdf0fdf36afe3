"""Typed configuration: `config.toml` plus `WSD_<SECTION>_<KEY>` environment overrides.

The whole daemon receives one `Config` object; nothing below the entry points reads files
or the environment, so tests can build a config in memory and handlers stay pure.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from wsd.steps import STEPS

__all__ = ["Config", "ConfigError", "MetricsConfig", "OidcConfig", "OidcProvider", "OIDC_ALGORITHMS", "TokenEntry", "load_config", "DEFAULT_CONFIG_PATH"]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"
ENV_PREFIX = "WSD_"


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key."""


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/ws"
    allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["http://localhost:3000"])
    max_message_bytes: int = 1_048_576
    max_inflight_per_connection: int = 32
    login_timeout_seconds: float = 10.0
    shutdown_grace_seconds: float = 10.0
    max_send_buffer_bytes: int = 262_144
    send_timeout_seconds: float = 30.0
    max_connections: int = 10_000
    max_connections_per_token: int = 1_000
    max_unauthenticated: int = 1_000
    max_messages_before_login: int = 5
    # TCP connections still in their HTTP handshake (a slow or partial request holds one):
    # past it new connections are closed at once. Each handshake gets open_timeout_seconds.
    max_handshakes: int = 1_000
    open_timeout_seconds: float = 10.0
    # Keepalive: a ping every ping_interval_seconds; no pong within ping_timeout_seconds of
    # it closes the connection with 1011.
    ping_interval_seconds: float = 20.0
    ping_timeout_seconds: float = 20.0
    listen_backlog: int = 511
    workers: int = 1
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client: the
    # address the failed-login throttle and the logs use (wsd.client_address).
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    # The WebSocket library under the same server logic: websockets (default) or picows
    # (the optional `picows` extra, `pip install 'wsd[picows]'`).
    transport: Literal["websockets", "picows"] = "websockets"


class DatabaseConfig(_Section):
    dsn: str = ""
    data_dir: str = "var/pgdata"
    pool_min_size: int = 2
    pool_max_size: int = 10
    acquire_timeout_seconds: float = 5.0
    embedded_restarts: int = 3


class TokenEntry(_Section):
    name: str
    role: Literal["viewer", "admin"]
    sha256: str


class AuthConfig(_Section):
    tokens: list[TokenEntry] = msgspec.field(default_factory=list)
    max_failures_per_minute: int = 20


# Signature algorithms a provider may be allowed (`oidc.providers[].algorithms`): asymmetric
# only. `none` and the HMAC family (HS256...) are never accepted: a verifier that took HS256
# would check a token "signed" with the provider's *public* key as an HMAC secret (key
# confusion).
OIDC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                             "ES256", "ES384", "ES512", "EdDSA"})


class OidcProvider(_Section):
    """One OpenID provider people sign in with; its tokens are trusted only with its keys."""

    name: str                      # short label: logs, the page's button, the caller's name prefix
    issuer: str                    # exactly the `iss` of its tokens; discovery is {issuer}/.well-known/...
    client_id: str                 # the page's public client (Authorization Code + PKCE, no secret)
    audience: str = ""             # the `aud` tokens must carry; empty: client_id (an ID token's aud)
    role_claim: str = "roles"      # the claim naming the person's roles or groups (a string or a list)
    # Claim value -> wsd role; a person with several gets the highest. No match: login refused.
    roles: dict[str, Literal["viewer", "admin"]] = msgspec.field(default_factory=dict)
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["RS256"])
    scopes: str = "openid profile email"
    name_claim: str = "name"
    email_claim: str = "email"     # Entra ID: "preferred_username" when `email` is not issued


class OidcConfig(_Section):
    providers: list[OidcProvider] = msgspec.field(default_factory=list)
    # Clock skew allowed on exp, nbf and iat, in seconds.
    leeway_seconds: float = 30.0
    # A provider's JWKS is fetched again on an unknown `kid` at most once per this many
    # seconds (concurrent misses share one fetch), and in any case once it is this old.
    jwks_refetch_seconds: float = 30.0
    jwks_max_age_seconds: float = 3600.0
    # A connection signed in with a token is sent `auth.expiring` this long before it expires.
    expiry_notice_seconds: float = 60.0
    http_timeout_seconds: float = 5.0


class BusinessConfig(_Section):
    timezone: str = "Europe/Madrid"
    workday_start: str = "09:00"
    workday_end: str = "18:00"
    workdays: list[int] = msgspec.field(default_factory=lambda: [1, 2, 3, 4, 5])
    slot_minutes: int = 30
    min_notice_minutes: int = 120

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class OutlookConfig(_Section):
    enabled: bool = False
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str = ""
    mailbox: str = ""
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    timeout_seconds: float = 10.0
    max_attempts: int = 6
    retry_seconds: float = 5.0
    sync_past_days: int = 30
    sync_future_days: int = 90


class LimitsConfig(_Section):
    max_package_items: int = 200
    default_page_size: int = 100


class LiveConfig(_Section):
    min_interval_ms: int = 200
    safety_rerun_seconds: float = 60.0
    max_subscriptions_per_connection: int = 100
    max_queries_per_token: int = 1000
    max_queries: int = 10000
    max_concurrent_reruns: int = 4
    max_reruns_per_second: int = 500


class TrailConfig(_Section):
    # Days trail entries are kept; 0 keeps them for ever (the default). Older ones are
    # purged hourly by the daemon, or at once by `wsd trail purge --older-than DAYS`.
    keep_days: int = 0


class CacheConfig(_Section):
    ttl_seconds: float = 2.0


class MetricsConfig(_Section):
    """GET /metrics: who may scrape it (an address in `allowed_addresses` naming this server
    by an IP address or a name in `allowed_hosts`, or anyone showing the token whose SHA-256
    is `token_sha256`) and how old the outbox figures may be."""

    enabled: bool = True
    allowed_addresses: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1", "::1"])
    allowed_hosts: list[str] = msgspec.field(default_factory=lambda: ["localhost"])
    token_sha256: str = ""
    outbox_cache_seconds: float = 5.0


class ReportsConfig(_Section):
    """Reporting: after how many hours at a step a lead is stalled (a step left out, such as
    `completed`, never stalls)."""

    stalled_hours: dict[str, float] = msgspec.field(default_factory=lambda: {
        "start": 24.0, "consent": 24.0, "personal_data": 48.0, "bant": 48.0,
        "requirements": 72.0, "meeting": 168.0})

    def stalled_hours_by_step(self) -> list[float | None]:
        """The thresholds in funnel order, None for a step that never stalls."""
        return [self.stalled_hours.get(step) for step in STEPS]


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_lines_per_second: int = 1000


class Config(_Section):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    business: BusinessConfig = msgspec.field(default_factory=BusinessConfig)
    outlook: OutlookConfig = msgspec.field(default_factory=OutlookConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    live: LiveConfig = msgspec.field(default_factory=LiveConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    reports: ReportsConfig = msgspec.field(default_factory=ReportsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    trail: TrailConfig = msgspec.field(default_factory=TrailConfig)
    oidc: OidcConfig = msgspec.field(default_factory=OidcConfig)
    # Directory that relative paths (database.data_dir) are resolved against.
    base_dir: str = "."

    @property
    def data_dir(self) -> Path:
        return (Path(self.base_dir) / self.database.data_dir).resolve()


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?")


def _check(config: Config) -> None:
    """Semantic checks msgspec's types cannot express; each failure names its key."""
    s, d, b = config.server, config.database, config.business
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"server.port: {s.port} is not a TCP port (0-65535)")
    if not s.path.startswith("/"):
        raise ConfigError(f"server.path: must start with '/', got {s.path!r}")
    for key, value in (("server.max_message_bytes", s.max_message_bytes),
                       ("server.max_inflight_per_connection", s.max_inflight_per_connection),
                       ("database.pool_min_size", d.pool_min_size),
                       ("database.pool_max_size", d.pool_max_size),
                       ("business.slot_minutes", b.slot_minutes),
                       ("server.max_send_buffer_bytes", s.max_send_buffer_bytes),
                       ("server.max_connections", s.max_connections),
                       ("server.max_connections_per_token", s.max_connections_per_token),
                       ("server.max_unauthenticated", s.max_unauthenticated),
                       ("server.max_messages_before_login", s.max_messages_before_login),
                       ("server.max_handshakes", s.max_handshakes),
                       ("server.listen_backlog", s.listen_backlog),
                       ("auth.max_failures_per_minute", config.auth.max_failures_per_minute),
                       ("limits.max_package_items", config.limits.max_package_items),
                       ("limits.default_page_size", config.limits.default_page_size),
                       ("live.max_subscriptions_per_connection", config.live.max_subscriptions_per_connection),
                       ("live.max_queries_per_token", config.live.max_queries_per_token),
                       ("live.max_queries", config.live.max_queries),
                       ("live.max_concurrent_reruns", config.live.max_concurrent_reruns),
                       ("live.max_reruns_per_second", config.live.max_reruns_per_second)):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if config.limits.default_page_size > 1000:
        raise ConfigError("limits.default_page_size: at most 1000, the largest `limit` a payload may give")
    if config.log.access_lines_per_second < 0:
        raise ConfigError("log.access_lines_per_second: must not be negative (0 = every request)")
    if s.workers < 0:
        raise ConfigError("server.workers: must not be negative (0 = one per core)")
    if config.trail.keep_days < 0:
        raise ConfigError("trail.keep_days: must not be negative (0 = keep for ever)")
    if config.live.min_interval_ms < 0:
        raise ConfigError("live.min_interval_ms: must not be negative")
    for key, seconds in (("server.send_timeout_seconds", s.send_timeout_seconds),
                         ("server.open_timeout_seconds", s.open_timeout_seconds),
                         ("server.ping_interval_seconds", s.ping_interval_seconds),
                         ("server.ping_timeout_seconds", s.ping_timeout_seconds),
                         ("live.safety_rerun_seconds", config.live.safety_rerun_seconds),
                         ("database.acquire_timeout_seconds", d.acquire_timeout_seconds)):
        if seconds <= 0:
            raise ConfigError(f"{key}: must be positive, got {seconds}")
    if d.embedded_restarts < 0:
        raise ConfigError("database.embedded_restarts: must not be negative")
    if d.pool_min_size > d.pool_max_size:
        raise ConfigError("database.pool_min_size: larger than database.pool_max_size")
    _check_business(config.business)
    _check_tokens(config.auth.tokens)
    _check_networks("server.trusted_proxies", s.trusted_proxies)
    _check_metrics(config.metrics)
    _check_reports_and_outlook(config)
    _check_oidc(config.oidc)


def _check_oidc(o: OidcConfig) -> None:
    for key, seconds in (("oidc.leeway_seconds", o.leeway_seconds),
                         ("oidc.jwks_refetch_seconds", o.jwks_refetch_seconds),
                         ("oidc.expiry_notice_seconds", o.expiry_notice_seconds)):
        if seconds < 0:
            raise ConfigError(f"{key}: must not be negative, got {seconds}")
    for key, seconds in (("oidc.jwks_max_age_seconds", o.jwks_max_age_seconds),
                         ("oidc.http_timeout_seconds", o.http_timeout_seconds)):
        if seconds <= 0:
            raise ConfigError(f"{key}: must be positive, got {seconds}")
    if o.leeway_seconds > 300:
        raise ConfigError("oidc.leeway_seconds: at most 300 (a small allowance for clock skew)")
    names: set[str] = set()
    issuers: set[str] = set()
    for index, provider in enumerate(o.providers):
        key = f"oidc.providers[{index}]"
        if not _PROVIDER_NAME.fullmatch(provider.name) or provider.name in names:
            raise ConfigError(f"{key}.name: a unique name of letters, digits, '-' or '_', "
                              f"got {provider.name!r}")
        if provider.issuer in issuers:
            raise ConfigError(f"{key}.issuer: {provider.issuer!r} is another provider's issuer")
        if not _secure_url(provider.issuer):
            raise ConfigError(f"{key}.issuer: an https:// URL (http:// only on loopback), "
                              f"got {provider.issuer!r}")
        if not provider.client_id:
            raise ConfigError(f"{key}.client_id: required")
        bad = [alg for alg in provider.algorithms if alg not in OIDC_ALGORITHMS]
        if bad or not provider.algorithms:
            raise ConfigError(f"{key}.algorithms: asymmetric algorithms only "
                              f"({', '.join(sorted(OIDC_ALGORITHMS))}), got {provider.algorithms}")
        if not provider.roles:
            raise ConfigError(f"{key}.roles: map at least one {provider.role_claim!r} value to a role")
        names.add(provider.name)
        issuers.add(provider.issuer)


def _secure_url(url: str) -> bool:
    """https, or http to this machine (a test provider, a local Keycloak)."""
    if url.startswith("https://"):
        return True
    host = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)[0]
    return url.startswith("http://") and host in ("127.0.0.1", "localhost", "[::1]")


def _check_business(b: BusinessConfig) -> None:
    try:
        ZoneInfo(b.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"business.timezone: unknown IANA time zone {b.timezone!r}") from None
    for key in ("workday_start", "workday_end"):
        if not _HHMM.match(getattr(b, key)):
            raise ConfigError(f"business.{key}: expected HH:MM, got {getattr(b, key)!r}")
    if dt.time.fromisoformat(b.workday_start) >= dt.time.fromisoformat(b.workday_end):
        raise ConfigError("business.workday_start: must be before business.workday_end")
    if not b.workdays or any(day not in range(1, 8) for day in b.workdays):
        raise ConfigError("business.workdays: ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
    if b.min_notice_minutes < 0:
        raise ConfigError("business.min_notice_minutes: must not be negative")


def _check_tokens(tokens: list[TokenEntry]) -> None:
    first_named: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if not _SHA256.match(token.sha256):
            raise ConfigError(f"auth.tokens[{index}].sha256: expected 64 lowercase hex digits")
        # Idempotency keys, connection limits and logs go by name: two tokens of one name
        # would replay each other's stored results.
        if token.name in first_named:
            raise ConfigError(f"auth.tokens[{index}].name: {token.name!r} is already the name of "
                              f"auth.tokens[{first_named[token.name]}]; token names must be unique")
        first_named[token.name] = index


def _check_reports_and_outlook(config: Config) -> None:
    for step, hours in config.reports.stalled_hours.items():
        if step not in STEPS:
            raise ConfigError(f"reports.stalled_hours.{step}: not a step ({', '.join(STEPS)})")
        if not hours > 0:
            raise ConfigError(f"reports.stalled_hours.{step}: must be positive, got {hours}")
    o = config.outlook
    positive: tuple[tuple[str, float], ...] = (
        ("outlook.timeout_seconds", o.timeout_seconds), ("outlook.max_attempts", o.max_attempts),
        ("outlook.retry_seconds", o.retry_seconds))
    for name, amount in positive:
        if amount <= 0:
            raise ConfigError(f"{name}: must be positive, got {amount}")
    if config.outlook.enabled:
        for key in ("tenant_id", "client_id", "client_secret", "mailbox"):
            if not getattr(config.outlook, key):
                raise ConfigError(f"outlook.{key}: required when outlook.enabled is true")


def _check_networks(key: str, entries: list[str]) -> None:
    for index, address in enumerate(entries):
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ConfigError(f"{key}[{index}]: not an IP address or network: {address!r}") from None


def _check_metrics(m: MetricsConfig) -> None:
    _check_networks("metrics.allowed_addresses", m.allowed_addresses)
    for index, host in enumerate(m.allowed_hosts):
        if host != "*" and not _HOST_NAME.fullmatch(host):
            raise ConfigError(f"metrics.allowed_hosts[{index}]: not a host name (without a port) "
                              f"or \"*\": {host!r}")
    if m.token_sha256 and not _SHA256.match(m.token_sha256):
        raise ConfigError("metrics.token_sha256: expected 64 lowercase hex digits (or empty)")
    if m.outbox_cache_seconds < 0:
        raise ConfigError("metrics.outbox_cache_seconds: must not be negative")


def _env_value(raw: str, field_type: Any) -> Any:
    """Strings stay as typed; other values are parsed as TOML (numbers, booleans, lists)."""
    if field_type is str:
        return raw
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    sections = {f.name: f.type for f in msgspec.structs.fields(Config) if f.name != "base_dir"}
    for section, section_type in sections.items():
        for field in msgspec.structs.fields(section_type):
            env_name = f"{ENV_PREFIX}{section}_{field.name}".upper()
            if env_name in environ:
                data.setdefault(section, {})[field.name] = _env_value(environ[env_name], field.type)


def _key_of(error: msgspec.ValidationError) -> str:
    match = re.search(r"at `\$\.([^`]+)`", str(error))
    return match.group(1) if match else "config"


def load_config(path: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (default: the checkout's config.toml), apply environment overrides, validate.

    Example:
        >>> load_config(environ={"WSD_SERVER_PORT": "9000"}).server.port
        9000

    Args:
        path: a TOML file; a missing default file means all defaults.
        environ: the environment to read `WSD_*` overrides from (default `os.environ`).
    """
    environ = os.environ if environ is None else environ
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_path}: not valid TOML ({error})") from None
    elif path is not None:
        raise ConfigError(f"{config_path}: no such file")
    _apply_env(data, environ)
    data["base_dir"] = str(config_path.resolve().parent)
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as error:
        message = str(error).split(" - at ")[0]
        raise ConfigError(f"{_key_of(error)}: {message}") from None
    _check(config)
    return config
