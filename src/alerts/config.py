"""Operator configuration (TOML files) and deployment settings (environment).

Files: ``<config dir>/alerts.toml`` plus drop-ins ``<config dir>/sources.d/*.toml``,
read in name order (names starting with ``.`` are skipped: editors' lock files).
Every file may hold any section; tables (topics, destinations) are merged, arrays
(sources, routes) are concatenated, keys of ``[service]`` and ``[http]`` may be
spread over files, and a name or key defined twice is an error.

``load_config`` runs every check ``alerts run`` makes before it starts: the files
(``files.py``), every value (where its model declares it), every reference between
sections, each sink's settings from the environment and each destination against
its sink. Each problem is reported as ``file: key.path: reason``; all of them at
once, in one ``ConfigError``.

Secrets and deployment settings come only from the environment (``ALERTS_`` prefix,
see ``alerts.settings``), never from these files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings

from alerts.config_files import ParsedFile, read_config_dir
from alerts.contracts import SourceFactory
from alerts.errors import ConfigError, key_path
from alerts.keywords import Keywords
from alerts.model import (
    DEFAULT_MERGE_WINDOW_S,
    Destination,
    EventKind,
    Subscription,
    UpdateStyle,
    View,
)
from alerts.netguard import AllowPrivateNetwork, AllowPrivateNetworkOption
from alerts.notices import DEFAULT_AFTER, NoticePolicy
from alerts.options import (
    MIN_INTERVAL_S,
    DurationS,
    HttpUrl,
    IntervalS,
    PositiveDurationS,
    at_least_s,
    parse_duration_s,
)
from alerts.schedule import Schedule, parse_schedule
from alerts.settings import Settings, read_settings
from alerts.sinks import SinkRegistry
from alerts.sinks import registry as sink_registry
from alerts.sources import registry as source_registry
from alerts.templates import Template, TemplateError, parse

__all__ = [
    "Config",
    "DurationS",
    "Settings",
    "SourceSpec",
    "check_destinations",
    "load_config",
    "parse_duration_s",
    "sink_settings_problems",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
NAME_RULE = (
    "must be 1 to 64 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
)
RESERVED_TOPICS = frozenset({"all"})  # ``unsubscribe all`` means every topic
M = TypeVar("M", bound=BaseModel)


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(NAME_RULE)
    return value


def _text(limit: int) -> AfterValidator:
    """Printable text of at most ``limit`` characters (it ends up in headers and alerts)."""

    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        if not value.isprintable():
            raise ValueError("must not contain control characters or line breaks")
        return value

    return AfterValidator(check)


Name = Annotated[str, AfterValidator(_name)]
Label = Annotated[str, _text(200)]
Description = Annotated[str, _text(500)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ServiceConfig(_Strict):
    contact: Label = Field(default="", description="operator contact sent in the User-Agent")
    default_interval: IntervalS = 900.0
    jitter: StrictFloat = Field(default=0.1, ge=0.0, le=0.5)
    max_backoff: Annotated[DurationS, at_least_s(MIN_INTERVAL_S)] = 6 * 3600.0
    max_events_per_poll: StrictInt = Field(default=20, ge=1, le=10_000)
    poll_concurrency: StrictInt = Field(default=100, ge=1, le=10_000)
    delivery_max_attempts: StrictInt = Field(default=8, ge=1, le=1_000)
    delivery_concurrency: StrictInt = Field(default=50, ge=1, le=10_000)
    poll_lease: Annotated[PositiveDurationS, at_least_s(1.0)] = Field(
        default=300.0, description="how long a replica holds a claimed source"
    )
    delivery_lease: Annotated[PositiveDurationS, at_least_s(1.0)] = Field(
        default=120.0, description="how long a replica holds claimed deliveries"
    )
    shutdown_grace: DurationS = Field(
        default=5.0, ge=0.0, le=600.0, description="longest wait for work in flight at shutdown"
    )
    account_lease: Annotated[PositiveDurationS, at_least_s(3.0)] = Field(
        default=30.0,
        description="how long a replica owns a chat bot account after its last renewal",
    )
    operator_room: StrictStr | None = Field(
        default=None, description="the destination that gets failure and flood notices"
    )
    failure_notice_after: StrictInt = Field(
        default=DEFAULT_AFTER, ge=1, le=1_000, description="failed polls in a row before a notice"
    )

    @property
    def notices(self) -> NoticePolicy:
        """Where failure notices go and when (``alerts.notices``)."""
        return NoticePolicy(self.operator_room, self.failure_notice_after)


MAX_TIMEOUT_S = 3600.0


def _timeout(seconds: float) -> float:
    if seconds > MAX_TIMEOUT_S:
        raise ValueError(f"must be at most {MAX_TIMEOUT_S:.0f} s")
    return seconds


class HttpConfig(_Strict):
    timeout: Annotated[PositiveDurationS, AfterValidator(_timeout)] = 30.0
    max_bytes: StrictInt = Field(default=5_000_000, ge=1024, le=1 << 30)
    max_redirects: StrictInt = Field(default=5, ge=0, le=20)
    per_host: StrictInt = Field(default=4, ge=1, le=10_000)
    allow_private_network: AllowPrivateNetworkOption = Field(
        default=False,
        description="let every source reach loopback/private/link-local addresses "
        "(true, or a list of networks); the SSRF guard refuses them otherwise",
    )


def _template_text(text: str) -> str:
    try:
        parse(text)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return text


TemplateText = Annotated[StrictStr, AfterValidator(_template_text)]


class TemplateConfig(_Strict):
    """One ``[templates.NAME]`` table (``alerts.templates``)."""

    title: TemplateText = Field(default="", description="the headline; empty: the default")
    body: TemplateText = Field(default="", description="the text under it; empty: the default")
    facts: StrictBool = Field(default=True, description="keep the key facts under the body")


def _domain(value: str) -> str:
    host = value.strip().lower().rstrip(".")
    if host == "*":
        return host
    try:  # an internationalised name is kept as its ASCII (punycode) form
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise ValueError(f"{value!r} is not a host name") from None
    labels = host.split(".")
    if not host or any(
        not re.fullmatch(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", p) for p in labels
    ):
        raise ValueError(f"{value!r} is not a host name (write example.org, without https://)")
    return host


class ChatConfig(_Strict):
    """``[chat]``: what rooms may do beyond subscribing (``add-feed``)."""

    allow_add_sources: StrictBool = Field(
        default=False, description="let moderators (and users in DMs) add feeds with add-feed"
    )
    add_source_domains: tuple[Annotated[str, AfterValidator(_domain)], ...] = Field(
        default=(),
        description='hosts feeds may be added from (a host allows its subdomains; "*" any)',
    )
    add_source_quota: StrictInt = Field(
        default=5, ge=1, le=1000, description="most feeds one room may add"
    )
    add_source_interval: IntervalS | None = Field(
        default=None, description="how often added feeds are polled (default_interval if unset)"
    )
    allow_private_network: AllowPrivateNetworkOption = Field(
        default=False,
        description="let added feeds reach loopback/private addresses (never [http]'s)",
    )

    def domain_allowed(self, host: str) -> bool:
        """``host`` (ASCII: an internationalised name in punycode, as yarl's
        ``raw_host``) is a listed domain or a subdomain of one."""
        host = host.lower().rstrip(".")
        return any(d == "*" or host == d or host.endswith("." + d) for d in self.add_source_domains)


class TopicConfig(_Strict):
    description: Description = ""


class SourceConfig(BaseModel):
    """One ``[[sources]]`` table; unknown keys are the adapter's options."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    id: Name
    kind: str
    url: HttpUrl | None = None
    interval: IntervalS | None = None
    topics: tuple[str, ...] = ()
    backfill: StrictInt = Field(default=0, ge=0, le=10_000)
    fingerprint: tuple[str, ...] | None = Field(default=None, min_length=1)
    max_events: StrictInt | None = Field(default=None, ge=1, le=10_000)
    enabled: StrictBool = True
    name: Label = ""
    allow_private_network: AllowPrivateNetworkOption | None = None
    include: Keywords = Field(default=(), description="keep only item events with a keyword")
    exclude: Keywords = Field(default=(), description="drop item events with any keyword")


class DestinationConfig(BaseModel):
    """One ``[destinations.NAME]`` table; unknown keys are the sink's options.

    ``updates`` and ``merge_window`` say how the room shows events (``alerts.edits``),
    whatever its sink."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    sink: str
    target: Annotated[str, _text(2048)] = ""
    updates: UpdateStyle | None = Field(
        default=None, description="edit, reply or new: what an update does (default: edit)"
    )
    merge_window: DurationS = Field(
        default=DEFAULT_MERGE_WINDOW_S,
        description="reports of one story this close share one message (0: never)",
    )
    digest: str | None = Field(default=None, description="hourly, daily@HH:MM or off")
    quiet: str | None = Field(default=None, description="quiet hours HH:MM-HH:MM, or off")
    tz: str | None = Field(default=None, description="IANA time zone of digest and quiet")
    urgent: str | list[str] | None = Field(
        default=None, description="event kinds never held (e.g. milestone)"
    )
    template: StrictStr | None = Field(default=None, description="a [templates] name")

    @field_validator("digest", "quiet", "tz", "urgent", mode="before")
    @classmethod
    def _schedule_shape(cls, value: object, info: ValidationInfo) -> object:
        """An empty setting is a mistake (leave the key out for the default), and
        ``urgent`` is one string or an array of strings (said here, so the error
        names the key, not pydantic's union members)."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (leave the key out for the default)")
        if info.field_name == "urgent" and isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise ValueError(f"item {index + 1} must be a string (in quotes)")
        elif value is not None and not isinstance(value, str):
            also = " or an array of strings" if info.field_name == "urgent" else ""
            raise ValueError(f"must be a string (in quotes){also}")
        return value

    @field_validator("digest", "quiet", "tz", "urgent")
    @classmethod
    def _schedule(cls, value: str | list[str] | None, info: ValidationInfo) -> str | None:
        """Each setting checked and normalised (``alerts.schedule``)."""
        name = info.field_name or ""
        given: dict[str, Any] = {name: value}
        checked = None if value is None else parse_schedule(**given)
        found = None if checked is None else getattr(checked, name)
        return ",".join(found) if isinstance(found, tuple) else found

    @property
    def schedule(self) -> Schedule | None:
        """The digest / quiet-hours settings (``alerts.schedule``), if any is set."""
        return parse_schedule(digest=self.digest, quiet=self.quiet, tz=self.tz, urgent=self.urgent)


class RouteConfig(_Strict):
    destination: str
    topics: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    kinds: tuple[EventKind, ...] = ()
    include: Keywords = ()
    exclude: Keywords = ()
    min_amount: StrictFloat | None = Field(default=None, ge=0)
    min_change: StrictFloat | None = Field(default=None, ge=0)
    updates: UpdateStyle | None = None
    template: StrictStr | None = None


class ConfigFile(_Strict):
    service: dict[str, Any] = {}
    http: dict[str, Any] = {}
    chat: dict[str, Any] = {}
    topics: dict[str, TopicConfig] = {}
    sources: list[SourceConfig] = []
    destinations: dict[str, DestinationConfig] = {}
    routes: list[RouteConfig] = []
    templates: dict[str, TemplateConfig] = {}


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
    allow_private_network: AllowPrivateNetwork | None = None  # None: [http]'s
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    updates: UpdateStyle = UpdateStyle.EDIT  # the adapter's default for its rooms
    stories: bool = True  # its items are news that other sources may report too

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Config:
    """A whole validated configuration.

    ``origins`` names the file each destination comes from (problems found later,
    when a sink checks it, name the file too); ``route_tables`` counts the
    ``[[routes]]`` tables, which ``routes`` expands into one subscription per topic
    and source.
    """

    service: ServiceConfig
    http: HttpConfig
    topics: Mapping[str, TopicConfig]
    sources: Mapping[str, SourceSpec]
    destinations: Mapping[str, Destination]
    routes: tuple[Subscription, ...]
    files: tuple[str, ...] = field(default=())
    origins: Mapping[str, str] = field(default_factory=dict)
    route_tables: int = 0
    disabled: tuple[str, ...] = field(default=())
    """Ids of valid sources with ``enabled = false`` (kept, not polled)."""
    views: Mapping[str, View] = field(default_factory=dict)
    """How each config destination's room shows events (``updates``, ``merge_window``)."""
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    """Config destinations' digest and quiet-hours settings (``alerts.schedule``)."""
    templates: Mapping[str, Template] = field(default_factory=dict)
    """The operator's message templates by name (``alerts.templates``)."""
    chat: ChatConfig = field(default_factory=lambda: ChatConfig())
    """``[chat]``: whether rooms may add feeds, from where, how many."""

    @property
    def topic_descriptions(self) -> dict[str, str]:
        return {name: t.description for name, t in self.topics.items()}

    @property
    def source_updates(self) -> dict[str, UpdateStyle]:
        """Each source's default ``updates`` (its adapter's)."""
        return {sid: spec.updates for sid, spec in self.sources.items()}

    @property
    def not_stories(self) -> frozenset[str]:
        """Sources whose items are never merged with other sources' (their adapter's
        ``stories = False``)."""
        return frozenset(sid for sid, spec in self.sources.items() if not spec.stories)


def load_config(config_dir: Path) -> Config:
    """Read and validate every file, the sinks' settings and every destination;
    raise one ``ConfigError`` listing every problem."""
    files, problems = read_config_dir(config_dir)
    valid: list[tuple[str, ConfigFile]] = []
    for parsed in files:
        try:
            valid.append((parsed.origin, ConfigFile.model_validate(parsed.data)))
        except ValidationError as exc:
            problems.extend(ConfigError.from_validation(exc, origin=parsed.origin).problems)
    if problems:
        raise ConfigError(problems)
    return _Assembly(valid, files).build()


def check_destinations(config: Config, check: Callable[[Destination], None]) -> None:
    """Run ``check`` on every destination; a ``ConfigError`` it raises is reported
    with the file the destination comes from."""
    problems: list[str] = []
    for name, destination in config.destinations.items():
        problems.extend(_checked(config.origins.get(name, ""), check, destination))
    if problems:
        raise ConfigError(problems)


def _checked(origin: str, check: Callable[[Destination], None], dest: Destination) -> list[str]:
    try:
        check(dest)
    except ConfigError as exc:
        return [f"{origin}: {p}" if origin else p for p in exc.problems]
    return []


def sink_settings_problems(
    factories: SinkRegistry, used: Collection[str] = ()
) -> dict[str, list[str]]:
    """``kind → problems`` of every sink whose environment settings are invalid,
    among the sinks that matter now: those ``used`` by destinations and those whose
    variables are set (so a platform nobody uses is not even imported)."""
    bad: dict[str, list[str]] = {}
    checked: set[type[BaseSettings]] = set()
    for kind in factories.in_use(used, os.environ):
        settings = factories[kind].Settings
        if settings is None:
            continue
        try:
            read_settings(settings)
        except ConfigError as exc:
            bad[kind] = [] if settings in checked else exc.problems
        checked.add(settings)
    return bad


class _Assembly:
    """Merges the validated files into one ``Config``, collecting every problem."""

    def __init__(self, files: list[tuple[str, ConfigFile]], parsed: list[ParsedFile]) -> None:
        self.files = files
        self.names = tuple(p.origin for p in parsed)
        self.problems: list[str] = []
        self.sources_reg: Mapping[str, SourceFactory] = source_registry()
        self.default_options: dict[type[BaseModel], BaseModel] = {}
        self.sinks_reg: SinkRegistry = sink_registry()

    def build(self) -> Config:
        service = self._section("service", ServiceConfig, [(o, f.service) for o, f in self.files])
        http = self._section("http", HttpConfig, [(o, f.http) for o, f in self.files])
        chat = self._section("chat", ChatConfig, [(o, f.chat) for o, f in self.files])
        self._chat_domains(chat)
        topics = self._topics()
        sources, all_ids = self._sources(service or ServiceConfig(), topics)
        used = {dc.sink for _, cf in self.files for dc in cf.destinations.values()}
        bad_env = sink_settings_problems(self.sinks_reg, used & set(self.sinks_reg))
        for problems in bad_env.values():
            self.problems.extend(problems)
        destinations, origins = self._destinations(bad_env)
        routes, tables = self._routes(topics, all_ids, origins)
        templates = self._templates()
        self._operator_room(destinations)
        if self.problems or service is None or http is None or chat is None:
            raise ConfigError(self.problems)
        disabled = tuple(sc.id for _, _, sc in self._each_source() if not sc.enabled)
        views = {
            name: View(dc.updates, dc.merge_window, templates.get(dc.template or ""))
            for _, cf in self.files
            for name, dc in cf.destinations.items()
            if name in destinations
        }
        return Config(
            service,
            http,
            topics,
            sources,
            destinations,
            routes,
            self.names,
            origins,
            tables,
            disabled,
            views,
            schedules={
                name: schedule
                for _, cf in self.files
                for name, dc in cf.destinations.items()
                if name in destinations and (schedule := dc.schedule) is not None
            },
            templates=templates,
            chat=chat,
        )

    def _operator_room(self, destinations: Mapping[str, Destination]) -> None:
        for origin, cf in self.files:
            room = cf.service.get("operator_room")
            if isinstance(room, str) and room not in destinations:
                defined = ", ".join(sorted(destinations)) or "none"
                self.problems.append(
                    f"{origin}: service.operator_room: unknown destination {room!r}; "
                    f"defined: {defined}"
                )

    def _templates(self) -> dict[str, Template]:
        """Every ``[templates.NAME]``, once each; every ``template =`` names one."""
        templates: dict[str, Template] = {}
        where: dict[str, str] = {}
        for origin, cf in self.files:
            for name, tc in cf.templates.items():
                path = f"{origin}: templates.{key_path([name])}"
                if not _NAME.fullmatch(name):
                    self.problems.append(f"{path}: template name {NAME_RULE}")
                elif name in templates:
                    self.problems.append(f"{path}: already defined in {where[name]}")
                templates[name] = Template(name, tc.title, tc.body, tc.facts)
                where.setdefault(name, origin)
        for origin, cf in self.files:
            used: list[tuple[str, str | None]] = [
                (f"destinations.{key_path([n])}", dc.template) for n, dc in cf.destinations.items()
            ]
            used += [(f"routes[{i}]", rc.template) for i, rc in enumerate(cf.routes)]
            for path, chosen in used:
                if chosen is not None and chosen not in templates:
                    defined = ", ".join(sorted(templates)) or "none"
                    self.problems.append(
                        f"{origin}: {path}.template: unknown template {chosen!r}; "
                        f"defined templates: {defined}"
                    )
        return templates

    def _section(
        self, name: str, model: type[M], tables: list[tuple[str, dict[str, Any]]]
    ) -> M | None:
        """``[service]`` / ``[http]``: keys may come from several files, once each."""
        merged: dict[str, Any] = {}
        where: dict[str, str] = {}
        for origin, raw in tables:
            try:
                model.model_validate(raw)
            except ValidationError as exc:
                self.problems.extend(
                    ConfigError.from_validation(exc, origin=origin, prefix=name).problems
                )
            for key, value in raw.items():
                if key in where:
                    self.problems.append(
                        f"{origin}: {name}.{key_path([key])}: already set in {where[key]}"
                    )
                merged[key], where[key] = value, origin
        try:
            return model.model_validate(merged)
        except ValidationError:
            return None  # reported above, with its file

    def _chat_domains(self, chat: ChatConfig | None) -> None:
        if chat is not None and chat.allow_add_sources and not chat.add_source_domains:
            origin = next(o for o, f in self.files if "allow_add_sources" in f.chat)
            self.problems.append(
                f"{origin}: chat.add_source_domains: required when allow_add_sources = true "
                '(the hosts rooms may add feeds from, or ["*"] for any)'
            )

    def _topics(self) -> dict[str, TopicConfig]:
        topics: dict[str, TopicConfig] = {}
        where: dict[str, str] = {}
        for origin, cf in self.files:
            for name, topic in cf.topics.items():
                path = f"{origin}: topics.{key_path([name])}"
                if not _NAME.fullmatch(name) or name in RESERVED_TOPICS:
                    reason = NAME_RULE if name not in RESERVED_TOPICS else "is a reserved word"
                    self.problems.append(f"{path}: topic name {reason}")
                elif name in topics:
                    self.problems.append(f"{path}: already defined in {where[name]}")
                topics[name], where[name] = topic, origin
        return topics

    def _sources(
        self, service: ServiceConfig, topics: Mapping[str, TopicConfig]
    ) -> tuple[dict[str, SourceSpec], set[str]]:
        specs: dict[str, SourceSpec] = {}
        where: dict[str, str] = {}
        for origin, index, sc in self._each_source():
            path = f"{origin}: sources[{index}]"
            if sc.id in where:
                self.problems.append(
                    f"{path}.id: source {sc.id!r} already defined in {where[sc.id]}"
                )
            where.setdefault(sc.id, f"{origin} sources[{index}]")
            spec = _SourceCheck(self, origin, index, sc).spec(service, topics)
            if spec is not None and sc.enabled:
                specs[sc.id] = spec
        return specs, set(where)

    def _each_source(self) -> Iterator[tuple[str, int, SourceConfig]]:
        for origin, cf in self.files:
            for index, sc in enumerate(cf.sources):
                yield origin, index, sc

    def _destinations(
        self, bad_env: Mapping[str, list[str]]
    ) -> tuple[dict[str, Destination], dict[str, str]]:
        destinations: dict[str, Destination] = {}
        origins: dict[str, str] = {}
        for origin, cf in self.files:
            for name, dc in cf.destinations.items():
                path = f"{origin}: destinations.{key_path([name])}"
                if name in origins:
                    self.problems.append(f"{path}: already defined in {origins[name]}")
                    continue
                origins[name] = origin
                if not _NAME.fullmatch(name):
                    self.problems.append(f"{path}: destination name {NAME_RULE}")
                    continue
                destination = self._destination(origin, name, dc, bad_env)
                if destination is not None:
                    destinations[name] = destination
        return destinations, origins

    def _destination(
        self, origin: str, name: str, dc: DestinationConfig, bad_env: Mapping[str, list[str]]
    ) -> Destination | None:
        factory = self.sinks_reg.get(dc.sink) if dc.sink in self.sinks_reg else None
        if factory is None:
            known = ", ".join(sorted(self.sinks_reg))
            self.problems.append(
                f"{origin}: destinations.{name}.sink: unknown sink {dc.sink!r}; known: {known}"
            )
            return None
        try:
            options = factory.Options.model_validate(dict(dc.model_extra or {}))
        except ValidationError as exc:
            prefix = f"destinations.{name}"
            self.problems.extend(
                ConfigError.from_validation(exc, origin=origin, prefix=prefix).problems
            )
            return None
        destination = Destination(name, dc.sink, dc.target, options.model_dump(mode="json"))
        if dc.sink not in bad_env:
            self.problems.extend(_checked(origin, factory.check_destination, destination))
        return destination

    def _routes(
        self, topics: Mapping[str, TopicConfig], sources: set[str], destinations: Mapping[str, str]
    ) -> tuple[tuple[Subscription, ...], int]:
        routes: list[Subscription] = []
        tables = 0
        for origin, cf in self.files:
            for index, rc in enumerate(cf.routes):
                tables += 1
                path = f"{origin}: routes[{index}]"
                if rc.destination not in destinations:
                    self.problems.append(
                        f"{path}.destination: unknown destination {rc.destination!r}; "
                        f"defined: {', '.join(sorted(destinations)) or 'none'}"
                    )
                self.unknown(f"{path}.topics", "topic", rc.topics, topics)
                self.unknown(f"{path}.sources", "source", rc.sources, sources)
                routes.extend(_route_subscriptions(rc))
        return tuple(routes), tables

    def unknown(
        self, path: str, what: str, names: tuple[str, ...], known: Mapping[str, Any] | set[str]
    ) -> None:
        for position, name in enumerate(names):
            if name not in known:
                defined = ", ".join(sorted(known)) or "none"
                self.problems.append(
                    f"{path}[{position}]: unknown {what} {name!r}; defined {what}s: {defined}"
                )


class _SourceCheck:
    """Checks one ``[[sources]]`` table against its adapter and the topics."""

    def __init__(self, assembly: _Assembly, origin: str, index: int, sc: SourceConfig) -> None:
        self.assembly, self.origin, self.index, self.sc = assembly, origin, index, sc
        self.path = f"{origin}: sources[{index}]"
        self.before = len(assembly.problems)

    def spec(self, service: ServiceConfig, topics: Mapping[str, TopicConfig]) -> SourceSpec | None:
        sc = self.sc
        self.assembly.unknown(f"{self.path}.topics", "topic", sc.topics, topics)
        factory = self.assembly.sources_reg.get(sc.kind)
        if factory is None:
            known = ", ".join(sorted(self.assembly.sources_reg))
            self._problem(".kind", f"unknown source kind {sc.kind!r}; known: {known}")
            return None
        url = sc.url or factory.default_url
        if not url:
            self._problem(".url", f"required: kind {sc.kind!r} has no default URL")
        fingerprint = sc.fingerprint or factory.fingerprint_fields
        self._fingerprint(factory, fingerprint)
        options = self._options(factory)
        if len(self.assembly.problems) > self.before or options is None or not url:
            return None
        return SourceSpec(
            id=sc.id,
            kind=sc.kind,
            url=url,
            interval_s=sc.interval or service.default_interval,
            topics=sc.topics,
            options=options,
            fingerprint=tuple(fingerprint),
            backfill=sc.backfill,
            max_events=sc.max_events or service.max_events_per_poll,
            name=sc.name,
            origin=f"{self.origin} sources[{self.index}]",
            allow_private_network=sc.allow_private_network,
            include=sc.include,
            exclude=sc.exclude,
            updates=_adapter_updates(factory),
            stories=getattr(factory, "stories", True) is not False,
        )

    def _fingerprint(self, factory: SourceFactory, fields: tuple[str, ...]) -> None:
        known = ", ".join(sorted(factory.item_fields))
        for position, name in enumerate(fields):
            if name not in factory.item_fields:
                self._problem(
                    f".fingerprint[{position}]",
                    f"kind {self.sc.kind!r} has no item field {name!r}; its fields: {known}",
                )

    def _options(self, factory: SourceFactory) -> BaseModel | None:
        raw = dict(self.sc.model_extra or {})
        if not raw:  # the defaults: one instance per kind, not one per source (10,000 feeds)
            shared = self.assembly.default_options.get(factory.Options)
            if shared is None:
                shared = self.assembly.default_options[factory.Options] = (
                    factory.Options.model_validate({})
                )
            return shared
        try:
            return factory.Options.model_validate(raw)
        except ValidationError as exc:
            prefix = f"sources[{self.index}]"
            found = ConfigError.from_validation(exc, origin=self.origin, prefix=prefix)
            self.assembly.problems.extend(found.problems)
            return None

    def _problem(self, key: str, reason: str) -> None:
        self.assembly.problems.append(f"{self.path}{key}: {reason}")


def _adapter_updates(factory: SourceFactory) -> UpdateStyle:
    """An adapter's default ``updates`` (optional in the contract; ``edit`` when it
    declares none, or something else)."""
    declared = getattr(factory, "updates", None)
    return UpdateStyle(declared) if declared in tuple(UpdateStyle) else UpdateStyle.EDIT


def _route_subscriptions(rc: RouteConfig) -> list[Subscription]:
    common: dict[str, Any] = {
        "destination_id": rc.destination,
        "kinds": frozenset(rc.kinds),
        "include": rc.include,
        "exclude": rc.exclude,
        "min_amount": rc.min_amount,
        "min_change": rc.min_change,
        "updates": rc.updates,
        "template": rc.template,
        "created_by": "config",
    }
    if not rc.topics and not rc.sources:
        return [Subscription(**common)]
    return [Subscription(topic=t, **common) for t in rc.topics] + [
        Subscription(source=s, **common) for s in rc.sources
    ]
