"""Server settings: one validated tree built from defaults, a TOML file, the environment and
command-line overrides (highest priority last).

Every section forbids unknown keys and every error is reported with its dotted path, because
a typo in a config file that is silently ignored is the hardest kind of misconfiguration to
find on a shop's server at 9 a.m.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .model import Channel, StaffMember, Store

DEMO_CONFIG = Path(__file__).with_name("demo.toml")

_DAY = 86_400.0
_HOUR = 3_600.0


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix the file or variable."""


class ConfigIssues(ValueError):
    """Raised by cross-field validators so each problem keeps its own key path.

    Pydantic pins a model validator's error on the model itself; carrying (relative path,
    message) pairs lets the error report point at the exact keys instead of at a section.
    """

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in issues))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    # 0 asks the OS for a free port (tests); the server prints the one it got.
    port: int = Field(8080, ge=0, le=65535)
    # What browsers use to reach us when we sit behind a proxy; None: derived from host/port.
    public_url: str | None = None
    # None: serve the bundled web_client package.
    static_dir: Path | None = None
    # On SIGTERM: how long running calls may go on (clients are told to reconnect elsewhere)
    # before they are ended as interrupted and the process exits.
    shutdown_grace_s: float = Field(10.0, ge=0, le=3600)
    # HTTPS served by shopcall itself (no TLS-terminating proxy in front, docs/tls.md): the
    # PEM certificate chain, leaf first (certbot's fullchain.pem), and its unencrypted private
    # key (privkey.pem). Both or neither; checked at load, so a bad pair fails at start.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if self.tls_cert is None and self.tls_key is None:
            return self
        if self.tls_cert is None or self.tls_key is None:
            raise ConfigIssues([("tls_cert" if self.tls_cert is None else "tls_key",
                                 "set server.tls_cert and server.tls_key together")])
        self.ssl_context()  # ConfigIssues naming the file at fault
        return self

    def ssl_context(self) -> Any:
        """The server-side ssl.SSLContext (TLS 1.2 or later) for tls_cert/tls_key, or None
        without them. Raises ConfigIssues saying which file is wrong and how."""
        import ssl

        if self.tls_cert is None or self.tls_key is None:
            return None
        cert, key = self.tls_cert, self.tls_key
        issues = []
        for name, path in (("tls_cert", cert), ("tls_key", key)):
            try:
                path.read_bytes()
            except FileNotFoundError:
                issues.append((name, f"file not found: {path}"))
            except OSError as e:  # a key readable by root only, a directory
                issues.append((name, f"cannot read {path}: {e.strerror}"))
        if issues:
            raise ConfigIssues(issues)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # TLS 1.2: Mozilla's "intermediate" ciphers (forward secrecy, AEAD), as in
        # deploy/nginx/shopcall.conf; TLS 1.3's suites are all of that kind already.
        context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

        def no_passphrase() -> bytes:  # never prompt on the terminal of a service
            raise ConfigIssues([("tls_key", f"{key} is encrypted: give the key without a "
                                 "passphrase (openssl pkey -in KEY -out KEY.plain)")])

        try:
            context.load_cert_chain(cert, key, password=no_passphrase)
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise ConfigIssues([("tls_key", f"{key} is not the private key of the "
                                     f"certificate in {cert}")]) from None
            try:  # which of the two is not PEM?
                ssl.create_default_context(cafile=str(cert))
            except (ssl.SSLError, ValueError):
                raise ConfigIssues([("tls_cert", f"{cert} holds no PEM certificate "
                                     "(-----BEGIN CERTIFICATE-----)")]) from None
            raise ConfigIssues([("tls_key", f"{key} holds no PEM private key "
                                 "(-----BEGIN PRIVATE KEY-----)")]) from None
        return context


class HttpConfig(_Section):
    # The shops' own sites that embed the widget, as origins: "https://www.shop.example", or
    # "https://*.shop.example" for every subdomain. They get CORS on the widget's files and
    # the endpoints it calls, and may open shopper WebSockets. shopcall's own origin (the
    # demo page, console and dashboard) is always allowed; every other one is refused.
    allowed_origins: list[str] = []
    # Reverse proxies in front of the server (addresses or networks, e.g. "10.0.0.0/8"):
    # their X-Forwarded-For and X-Forwarded-Proto are believed, nobody else's.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for network in v:
            ipaddress.ip_network(network.strip(), strict=False)  # ValueError names it
        return v

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        from .web_security import normalise_origin

        for origin in v:
            if normalise_origin(origin) is None:
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], "
                                 "no path; *. for subdomains)")
        return v


class MetricsConfig(_Section):
    # /metrics on the main address needs an operator token (Prometheus: `authorization:
    # {credentials: <token>}` in the scrape config). A separate listen address (a private
    # network, loopback) serves it without one; port 0 picks a free port.
    host: str | None = None
    port: int | None = Field(None, ge=0, le=65535)

    @model_validator(mode="after")
    def _both_or_neither(self) -> MetricsConfig:
        if (self.host is None) != (self.port is None):
            raise ConfigIssues([("port" if self.port is None else "host",
                                 "set metrics.host and metrics.port together")])
        return self


class DatabaseConfig(_Section):
    path: Path = Path("var/shopcall.db")
    # "normal" trades the last transactions before a power cut for write throughput.
    synchronous: Literal["full", "normal"] = "full"


class AuthConfig(_Section):
    # None: generated once and kept in secret.key next to the database (see auth.resolve_secret).
    secret: str | None = Field(None, min_length=32, repr=False)
    shopper_token_ttl_s: float = Field(30 * _DAY, gt=0)
    staff_token_ttl_s: float = Field(12 * _HOUR, gt=0)
    operator_token_ttl_s: float = Field(12 * _HOUR, gt=0)
    # Anonymous token minting is the one unauthenticated write; limited per client IP.
    shopper_tokens_per_minute: float = Field(10.0, gt=0)


class LimitsConfig(_Section):
    # 64 KiB: a browser SDP offer (5-10 kB, more with many streams) must fit in one frame.
    max_message_bytes: int = Field(65_536, ge=256)
    messages_per_second: float = Field(20.0, gt=0)
    message_burst: int = Field(40, ge=1)
    max_text_chars: int = Field(4_000, ge=1)
    max_connections_per_shopper: int = Field(5, ge=1)


class RoutingConfig(_Section):
    offer_timeout_s: float = Field(30.0, gt=0)
    missed_after_s: float = Field(120.0, gt=0)
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_timeout_s: float = Field(15.0, gt=0)
    staff_reconnect_grace_s: float = Field(30.0, ge=0)
    default_handle_time_s: float = Field(240.0, gt=0)
    allow_overflow: bool = True

    @model_validator(mode="after")
    def _heartbeat_timeout_after_interval(self) -> RoutingConfig:
        # A timeout at or below the interval would drop healthy connections between two pings.
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ConfigIssues([(
                "heartbeat_timeout_s",
                f"must be greater than heartbeat_interval_s "
                f"({self.heartbeat_timeout_s:g} <= {self.heartbeat_interval_s:g})",
            )])
        return self


def _as_list(v: Any) -> Any:
    """RTCIceServer accepts a bare URL string too; mirror it so configs can be copied across."""
    return [v] if isinstance(v, str) else v


class IceServer(_Section):
    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = Field(None, repr=False)

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("urls")
    @classmethod
    def _ice_schemes(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return v


class TurnConfig(_Section):
    """A TURN relay (coturn) for shoppers and store devices on networks that block UDP.

    Each participant joining a call gets its own credentials, minted by the TURN REST scheme
    coturn checks with `use-auth-secret`: username "<expiry>:<participant>", password
    base64(HMAC-SHA1(secret, username)). No long-lived TURN password reaches a browser, and a
    leaked one stops working after `credential_lifetime_s`.
    """

    # turn: (UDP/TCP) and turns: (TLS, e.g. port 443) URLs given to clients, e.g.
    # ["turn:turn.shop.example:3478?transport=udp", "turns:turn.shop.example:443?transport=tcp"].
    urls: list[str] = []
    # coturn's static-auth-secret. Required with urls.
    secret: str | None = Field(None, repr=False)
    # Credentials must outlive the longest call: browsers refresh their allocation every few
    # minutes with them, and coturn refuses the refresh once they have expired.
    credential_lifetime_s: float = Field(6 * 3600, ge=60, le=7 * 86400)
    # The server checks its relay (an allocation per URL, at start and every
    # check_interval_s) and verifies a turns: URL's certificate against the system's CAs,
    # or this bundle.
    check_ca_file: Path | None = None
    check_interval_s: float = Field(300.0, ge=1, le=86400)

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("urls")
    @classmethod
    def _turn_urls(cls, v: list[str]) -> list[str]:
        from .turn_check import parse_turn_url

        for url in v:
            parse_turn_url(url)  # the parser the relay check uses; ValueError says why
        return v

    @model_validator(mode="after")
    def _secret_with_urls(self) -> TurnConfig:
        if self.urls and not self.secret:
            raise ConfigIssues([("secret", "set media.turn.secret (coturn's "
                                 "static-auth-secret) together with media.turn.urls")])
        return self


class MediaConfig(_Section):
    # "sfu": the built-in selective forwarding unit; "none": calls are signalled but
    # negotiating media is refused with media_unavailable (chat-only deployments).
    backend: Literal["sfu", "none"] = "sfu"
    # Given to clients as they are (STUN, or TURN with static credentials); the SFU itself
    # never uses them: its host candidates are what clients connect to.
    ice_servers: list[IceServer] = []
    turn: TurnConfig = TurnConfig()
    # Addresses the SFU gathers and announces as ICE candidates; empty: every non-loopback
    # interface (aioice's default). Loopback deployments (tests, benchmarks): ["127.0.0.1"].
    announced_addresses: list[str] = []
    # The rare server behind 1:1 NAT (a cloud's elastic IP on a private interface): each host
    # candidate is also announced at these public addresses, same port, as server reflexive
    # (mediaserver/ice_candidates.py). The server still takes no STUN or TURN allocation.
    public_addresses: list[str] = []
    # Below this estimated downlink a receiver gets audio only (and is told so).
    video_floor_kbps: float = Field(100.0, gt=0)

    @field_validator("announced_addresses", "public_addresses")
    @classmethod
    def _ip_addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            ipaddress.ip_address(address)  # ValueError names the bad address
        return v


class TryOnConfig(_Section):
    # Virtual try-on (mediaserver/tryon): a shopper's camera decoded, a garment drawn on it
    # and re-encoded by the SFU. Off by default: it is the one feature that costs server
    # CPU per call (about 8 ms per frame, see README), and shoppers in stores offering it get
    # one more video m-section (their mirror) negotiated when they join a video call.
    enabled: bool = False
    # Stores that offer it; empty: every store.
    stores: list[str] = []
    # A shop's own garments, <name>.png + <name>.json (mediaserver/tryon/catalogue.py);
    # operator uploads are written here too. None: the samples only, uploads kept in memory.
    garments_dir: Path | None = None
    # Include the project's sample garments (drawn at start, ids "sample-...").
    samples: bool = True
    # Target bitrate of a try-on stream (aiortc's encoders clamp it to 250-1500 kbps).
    bitrate_kbps: int = Field(1000, ge=250, le=1500)


_Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StoreConfig(_Section):
    id: str = _Id
    name: str = Field(min_length=1)
    overflow: bool = True
    uplink_kbps: int | None = Field(None, gt=0)
    downlink_kbps: int | None = Field(None, gt=0)
    staff_cost_per_hour: float | None = Field(None, ge=0)

    def to_model(self) -> Store:
        return Store(id=self.id, name=self.name, overflow=self.overflow,
                     uplink_kbps=self.uplink_kbps, downlink_kbps=self.downlink_kbps,
                     staff_cost_per_hour=self.staff_cost_per_hour)


class StaffConfig(_Section):
    id: str = _Id
    name: str = Field(min_length=1)
    store: str
    skills: list[str] = []
    languages: list[str] = []
    max_conversations: int = Field(2, ge=1, le=20)
    channels: list[Literal["chat", "audio", "video"]] = Field(
        default_factory=lambda: ["chat", "audio", "video"], min_length=1)

    def to_model(self) -> StaffMember:
        return StaffMember(id=self.id, name=self.name, store_id=self.store,
                           skills=frozenset(self.skills), languages=frozenset(self.languages),
                           max_conversations=self.max_conversations,
                           channels=frozenset(Channel(c) for c in self.channels))


class QualificationOption(_Section):
    id: str = Field(min_length=1)
    label: str = Field(min_length=1)
    skill: str | None = Field(None, min_length=1)  # None: the answer does not hint a skill


class QualificationQuestion(_Section):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    options: list[QualificationOption] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_options(self) -> QualificationQuestion:
        _check_unique([o.id for o in self.options], "options")
        return self


def _check_unique(ids: list[str], where: str) -> None:
    """Duplicate ids would make one entry silently shadow another at runtime."""
    seen: dict[str, int] = {}
    issues = []
    for i, id_ in enumerate(ids):
        if id_ in seen:
            issues.append((f"{where}[{i}].id", f"duplicate id {id_!r} (also {where}[{seen[id_]}])"))
        seen.setdefault(id_, i)
    if issues:
        raise ConfigIssues(issues)


# The TOML document being loaded; a context variable so Settings() alone still works and
# concurrent loads (tests) cannot see each other's files.
_toml_data: ContextVar[dict[str, Any] | None] = ContextVar("shopcall_toml_data", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHOPCALL_",
        env_nested_delimiter="__",
        env_ignore_empty=True,  # `SHOPCALL_AUTH__SECRET=` in a compose file means "unset"
        extra="forbid",
    )

    server: ServerConfig = ServerConfig()
    http: HttpConfig = HttpConfig()
    metrics: MetricsConfig = MetricsConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    routing: RoutingConfig = RoutingConfig()
    media: MediaConfig = MediaConfig()
    tryon: TryOnConfig = TryOnConfig()
    stores: list[StoreConfig] = []
    staff: list[StaffConfig] = []
    qualification: list[QualificationQuestion] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Overrides (init kwargs) > environment > TOML > defaults. No .env files: deployments
        # already have a config file, a third hidden source would only confuse.
        return (init_settings, env_settings,
                InitSettingsSource(settings_cls, init_kwargs=_toml_data.get() or {}))

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        issues: list[tuple[str, str]] = []
        for where, ids in (("stores", [s.id for s in self.stores]),
                           ("staff", [s.id for s in self.staff]),
                           ("qualification", [q.id for q in self.qualification])):
            try:
                _check_unique(ids, where)
            except ConfigIssues as e:
                issues += e.issues
        known = {s.id for s in self.stores}
        for i, member in enumerate(self.staff):
            if member.store not in known:
                choices = ", ".join(sorted(known)) or "none configured"
                issues.append((f"staff[{i}].store",
                               f"unknown store {member.store!r} (stores: {choices})"))
        if issues:
            raise ConfigIssues(issues)
        return self

    def store_models(self) -> list[Store]:
        return [s.to_model() for s in self.stores]

    def staff_models(self) -> list[StaffMember]:
        return [s.to_model() for s in self.staff]

    def qualification_dicts(self) -> list[dict[str, Any]]:
        """The plain [{id, text, options: [{id, label, skill}]}] structure routing consumes."""
        return [q.model_dump() for q in self.qualification]


def load_settings(config_file: Path | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings or raise ConfigError listing every offending key at once."""
    data = _read_toml(Path(config_file)) if config_file is not None else {}
    nested = _nest(overrides or {})
    token = _toml_data.set(data)
    try:
        return Settings(**nested)
    except ValidationError as e:
        raise ConfigError(_format_errors(e)) from None
    except SettingsError as e:  # an environment variable holding malformed JSON
        raise ConfigError(_format_settings_error(e)) from None
    finally:
        _toml_data.reset(token)


def _format_settings_error(exc: SettingsError) -> str:
    m = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(exc))
    if m is None:
        return f"invalid configuration: {exc}"
    return (f"invalid configuration: {m[1]}: the environment variable SHOPCALL_{m[1].upper()} "
            f"(or one of SHOPCALL_{m[1].upper()}__*) is not valid JSON")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file is a directory: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:  # the message carries "(at line L, column C)"
        raise ConfigError(f"invalid TOML in {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"invalid TOML in {path}: not UTF-8 ({e.reason})") from None


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """{"server.port": 1} -> {"server": {"port": 1}}, merging keys that share a section."""
    out: dict[str, Any] = {}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"invalid override {dotted!r}: {part!r} is not a section")
            node = child
        node[leaf] = value
    return out


_SECRET_WORDS = ("secret", "credential", "password")


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _dotted(loc)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigIssues):
            lines += [f"{_join(path, rel)}: {msg}" for rel, msg in cause.issues]
            continue
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            msg = "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif err["type"] == "value_error" and cause is not None:
            msg = str(cause)
        else:
            msg = err["msg"]
        value = err.get("input")
        if (err["type"] not in ("missing", "extra_forbidden")
                and isinstance(value, str | int | float | bool)
                and not any(w in path for w in _SECRET_WORDS)):
            msg += f" (got {value!r})"
        lines.append(f"{path or '<top level>'}: {msg}")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n" + "\n".join(f"  {line}" for line in lines)


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names valid at loc, to turn a typo report into a fix."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        model = inner[0] if inner and getattr(ann, "__origin__", None) is list else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)
