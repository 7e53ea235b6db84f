"""Operator configuration (TOML files) and deployment settings (environment).

Files: ``<config dir>/alerts.toml`` plus drop-ins ``<config dir>/sources.d/*.toml``,
read in name order. Every file may hold any section; tables (topics, destinations)
are merged, arrays (sources, routes) are concatenated, and a name defined twice is
an error. Everything is validated before anything starts; each problem is reported
as ``file: key.path: reason``.

Secrets and deployment settings come only from the environment (``ALERTS_`` prefix,
see ``Settings``), never from these files.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.errors import ConfigError
from alerts.model import Destination, EventKind, Subscription
from alerts.options import DurationS, parse_duration_s

__all__ = ["DurationS", "parse_duration_s"]

MIN_INTERVAL_S = 30.0
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class Settings(BaseSettings):
    """Deployment settings from the environment (``ALERTS_`` prefix).

    Platform credentials live in each sink's own settings (``ALERTS_DISCORD_*``,
    ``ALERTS_MATRIX_*``).
    """

    model_config = SettingsConfigDict(env_prefix="ALERTS_", extra="ignore")

    config_dir: Path = Path("config")
    database_url: str = "sqlite:///data/alerts.db"
    data_dir: Path = Path("data")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    http_bind: str = Field(
        default="127.0.0.1:9464",
        description="host:port of /healthz, /readyz and /metrics; empty turns it off",
    )
    instance_name: str = ""
    api_token: SecretStr | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceConfig(_Strict):
    contact: str = Field(default="", description="operator contact sent in the User-Agent")
    default_interval: DurationS = 900.0
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    max_backoff: DurationS = 6 * 3600.0
    max_events_per_poll: int = Field(default=20, ge=1)
    poll_concurrency: int = Field(default=100, ge=1)
    delivery_max_attempts: int = Field(default=8, ge=1)
    delivery_concurrency: int = Field(default=50, ge=1)
    poll_lease: DurationS = Field(
        default=300.0, ge=1.0, description="how long a replica holds a claimed source"
    )
    delivery_lease: DurationS = Field(
        default=120.0, ge=1.0, description="how long a replica holds claimed deliveries"
    )
    shutdown_grace: DurationS = Field(
        default=5.0, ge=0.0, le=600.0, description="longest wait for work in flight at shutdown"
    )

    @field_validator("default_interval")
    @classmethod
    def _min_interval(cls, v: float) -> float:
        return _at_least_interval(v)


class HttpConfig(_Strict):
    timeout: DurationS = 30.0
    max_bytes: int = Field(default=5_000_000, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    per_host: int = Field(default=4, ge=1)


class TopicConfig(_Strict):
    description: str = ""


class SourceConfig(BaseModel):
    """One ``[[sources]]`` table; unknown keys are the adapter's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    kind: str
    url: str = ""
    interval: DurationS | None = None
    topics: tuple[str, ...] = ()
    backfill: int = Field(default=0, ge=0)
    fingerprint: tuple[str, ...] | None = None
    max_events: int | None = Field(default=None, ge=1)
    enabled: bool = True
    name: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("must be lower-case letters, digits, '-', '_' or '.' (at most 64)")
        return v

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, v: float | None) -> float | None:
        return None if v is None else _at_least_interval(v)


def _at_least_interval(v: float) -> float:
    if v < MIN_INTERVAL_S:
        raise ValueError(f"must be at least {MIN_INTERVAL_S:.0f} s")
    return v


class DestinationConfig(BaseModel):
    """One ``[destinations.NAME]`` table; unknown keys are the sink's options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    sink: str
    target: str = ""


class RouteConfig(_Strict):
    destination: str
    topics: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    kinds: tuple[EventKind, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_amount: float | None = None


class ConfigFile(_Strict):
    service: ServiceConfig | None = None
    http: HttpConfig | None = None
    topics: dict[str, TopicConfig] = {}
    sources: list[SourceConfig] = []
    destinations: dict[str, DestinationConfig] = {}
    routes: list[RouteConfig] = []


@dataclass(frozen=True)
class SourceSpec:
    """A validated source, ready for the scheduler."""

    id: str
    kind: str
    url: str
    interval_s: float
    topics: tuple[str, ...]
    options: BaseModel
    fingerprint: tuple[str, ...]
    backfill: int
    max_events: int
    name: str
    origin: str

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Config:
    service: ServiceConfig
    http: HttpConfig
    topics: Mapping[str, TopicConfig]
    sources: Mapping[str, SourceSpec]
    destinations: Mapping[str, Destination]
    routes: tuple[Subscription, ...]
    files: tuple[str, ...] = field(default=())

    @property
    def topic_descriptions(self) -> dict[str, str]:
        return {name: t.description for name, t in self.topics.items()}


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problems(origin: str, exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        path = _loc(tuple(err["loc"]))
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        lines.append(f"{origin}: {path}: {msg}")
    return lines


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def config_files(config_dir: Path) -> list[Path]:
    main = config_dir / "alerts.toml"
    dropins = sorted((config_dir / "sources.d").glob("*.toml"))
    return ([main] if main.exists() else []) + dropins


def load_config(config_dir: Path) -> Config:
    """Read and validate every file; raise ``ConfigError`` listing all problems."""
    paths = config_files(config_dir)
    if not paths:
        raise ConfigError(f"{_display(config_dir)}: no alerts.toml and no sources.d/*.toml found")
    problems: list[str] = []
    parsed: list[tuple[str, dict[str, Any], ConfigFile]] = []
    for path in paths:
        origin = _display(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{origin}: cannot read: {exc}")
            continue
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{origin}: invalid TOML: {exc}")
            continue
        try:
            parsed.append((origin, raw, ConfigFile.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(_problems(origin, exc))
    if problems:
        raise ConfigError(problems)
    return _assemble(parsed, [_display(p) for p in paths])


def _assemble(parsed: list[tuple[str, dict[str, Any], ConfigFile]], files: list[str]) -> Config:
    from alerts.sinks import registry as sink_registry
    from alerts.sources import registry as source_registry

    problems: list[str] = []
    service, http = ServiceConfig(), HttpConfig()
    topics: dict[str, TopicConfig] = {}
    destinations: dict[str, tuple[str, DestinationConfig]] = {}
    for origin, _, cf in parsed:
        if cf.service is not None:
            service = cf.service
        if cf.http is not None:
            http = cf.http
        for name, topic in cf.topics.items():
            if name in topics:
                problems.append(f"{origin}: topics.{name}: defined twice")
            topics[name] = topic
        for name, dest in cf.destinations.items():
            if name in destinations:
                problems.append(f"{origin}: destinations.{name}: defined twice")
            destinations[name] = (origin, dest)

    sources_reg = source_registry()
    sinks_reg = sink_registry()
    sources: dict[str, SourceSpec] = {}
    for origin, _, cf in parsed:
        for i, sc in enumerate(cf.sources):
            spec = _source_spec(origin, i, sc, service, topics, sources, sources_reg, problems)
            if spec is not None:
                sources[spec.id] = spec

    dests: dict[str, Destination] = {}
    for name, (origin, dc) in destinations.items():
        where = f"{origin}: destinations.{name}"
        factory = sinks_reg.get(dc.sink)
        if factory is None:
            problems.append(
                f"{where}.sink: unknown sink {dc.sink!r}; known: {', '.join(sorted(sinks_reg))}"
            )
            continue
        try:
            opts = factory.Options.model_validate(dict(dc.model_extra or {}))
        except ValidationError as exc:
            problems.extend(_problems(origin, exc, f"destinations.{name}"))
            continue
        dests[name] = Destination(name, dc.sink, dc.target, opts.model_dump(mode="json"))

    routes: list[Subscription] = []
    for origin, _, cf in parsed:
        for i, rc in enumerate(cf.routes):
            where = f"{origin}: routes[{i}]"
            if rc.destination not in dests and rc.destination not in destinations:
                problems.append(f"{where}.destination: unknown destination {rc.destination!r}")
            for t in rc.topics:
                if t not in topics:
                    problems.append(f"{where}.topics: unknown topic {t!r}")
            for s in rc.sources:
                if s not in sources:
                    problems.append(f"{where}.sources: unknown source {s!r}")
            routes.extend(_route_subscriptions(rc))
    if problems:
        raise ConfigError(problems)
    return Config(service, http, topics, sources, dests, tuple(routes), tuple(files))


def _source_spec(
    origin: str,
    index: int,
    sc: SourceConfig,
    service: ServiceConfig,
    topics: Mapping[str, TopicConfig],
    seen: Mapping[str, SourceSpec],
    registry: Mapping[str, Any],
    problems: list[str],
) -> SourceSpec | None:
    where = f"{origin}: sources[{index}]"
    before = len(problems)
    if sc.id in seen:
        problems.append(f"{where}.id: source {sc.id!r} already defined in {seen[sc.id].origin}")
    for t in sc.topics:
        if t not in topics:
            problems.append(
                f"{where}.topics: unknown topic {t!r}; defined topics: {', '.join(sorted(topics)) or 'none'}"
            )
    factory = registry.get(sc.kind)
    if factory is None:
        problems.append(
            f"{where}.kind: unknown source kind {sc.kind!r}; known: {', '.join(sorted(registry))}"
        )
        return None
    try:
        options = factory.Options.model_validate(dict(sc.model_extra or {}))
    except ValidationError as exc:
        problems.extend(_problems(origin, exc, f"sources[{index}]"))
        return None
    if len(problems) > before or not sc.enabled:
        return None
    return SourceSpec(
        id=sc.id,
        kind=sc.kind,
        url=sc.url,
        interval_s=sc.interval or service.default_interval,
        topics=sc.topics,
        options=options,
        fingerprint=sc.fingerprint or tuple(factory.fingerprint_fields),
        backfill=sc.backfill,
        max_events=sc.max_events or service.max_events_per_poll,
        name=sc.name,
        origin=f"{origin} sources[{index}]",
    )


def _route_subscriptions(rc: RouteConfig) -> list[Subscription]:
    common: dict[str, Any] = {
        "destination_id": rc.destination,
        "kinds": frozenset(rc.kinds),
        "include": rc.include,
        "exclude": rc.exclude,
        "min_amount": rc.min_amount,
        "created_by": "config",
    }
    if not rc.topics and not rc.sources:
        return [Subscription(**common)]
    return [Subscription(topic=t, **common) for t in rc.topics] + [
        Subscription(source=s, **common) for s in rc.sources
    ]
