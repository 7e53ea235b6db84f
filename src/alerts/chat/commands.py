"""The one command grammar, shared by every chat front end.

Matrix users type ``!alerts subscribe news kinds=new keywords=palantir``; Discord
users fill the same fields in ``/alerts subscribe``. Both end up as a ``Command``
executed by ``CommandService.execute``; front ends only translate and reply.

Grammar (words separated by spaces; values may be quoted)::

    help
    topics
    list
    subscribe TOPIC [kinds=new,updated,…] [keywords=a,b,…] [exclude=c,d,…]
              [min_amount=N] [min_change=N] [updates=edit|reply|new]
              [digest=hourly|daily@HH:MM|off] [quiet=HH:MM-HH:MM|off]
              [tz=Area/City] [urgent=milestone,…] [template=NAME]
              [notify_failures=yes|no]
    unsubscribe TOPIC | all
    add-feed URL [TOPIC] [updates=edit|reply|new]
    remove-feed ID|URL
    feeds

Keywords match whole words, case- and accent-insensitively; ``re:PATTERN`` is an
RE2 regular expression (``alerts.keywords``). A bad keyword is refused with the
reason, before anything is stored. ``updates`` says what an update does to the
earlier message of the same item in this room (``alerts.edits``): ``edit`` it in
place, ``reply`` (edit it and reply in its thread with what changed) or post a
``new`` message; without it, the room's default. ``digest``, ``quiet``, ``tz`` and
``urgent`` hold the alerts for one digest message (``alerts.schedule``).
``template`` shows them with one of the operator's templates (``alerts.templates``),
by name; a name the operator did not define is refused. ``notify_failures=yes``
also sends the room the failure notices of the topic's sources (``alerts.notices``).

Mutating commands (subscribe, unsubscribe, add-feed, remove-feed) need ``may_manage``
in the context; the front end decides it (Matrix power level, Discord Manage
Channels; in a DM, the one user). The feed verbs are ``alerts.chat.feeds``'s, present
when the service gives one (``feeds``).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alerts.chat.feeds import ChatFeeds, FeedRefused
from alerts.keywords import check_keywords
from alerts.model import Destination, EventKind, Subscription, UpdateStyle
from alerts.schedule import Schedule, parse_schedule

if TYPE_CHECKING:
    from alerts.store import Store

MUTATING = frozenset({"subscribe", "unsubscribe", "add-feed", "remove-feed"})
VERBS = ("help", "topics", "list", "subscribe", "unsubscribe", "add-feed", "remove-feed", "feeds")

HELP = """\
Commands:
  help                      this text
  topics                    the topics you can subscribe to
  list                      this room's subscriptions
  subscribe TOPIC [kinds=new,updated,milestone,delta] [keywords=a,b] [exclude=c,d]
            [min_amount=N] [min_change=N] [updates=edit|reply|new]
                            send this room alerts on TOPIC, optionally filtered:
                            keywords are whole words (re:PATTERN for a regex),
                            min_amount the smallest award, min_change the smallest
                            change a modification makes (1M = 1,000,000);
                            updates: edit the first alert in place, also reply
                            with what changed, or post each update anew
            [digest=hourly|daily@09:00|off] [quiet=22:00-07:00|off]
            [tz=Europe/Paris] [urgent=milestone]
                            hold alerts and send them as one digest message
                            (every hour, once a day, or when quiet hours end);
                            urgent kinds are never held
            [template=NAME]         word alerts with a template the operator
                                    defined (list shows them when there are any)
            [notify_failures=yes]   also say when a source of TOPIC starts
                                    failing and when it recovers
  unsubscribe TOPIC|all     stop alerts on TOPIC (or on every topic)
  add-feed URL [TOPIC] [updates=…]
                            add a feed of this room's own (where the operator
                            allows it), labelled TOPIC; shows what it lists now
  remove-feed ID|URL        remove a feed this room added
  feeds                     the feeds this room added
subscribe, unsubscribe, add-feed and remove-feed need moderator rights in this room
(not in a direct message)."""


class CommandError(Exception):
    """A command that cannot be parsed or executed; the message is the reply."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    topic: str | None = None
    kinds: frozenset[EventKind] = frozenset()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_amount: float | None = None
    min_change: float | None = None
    updates: UpdateStyle | None = None
    schedule: Schedule | None = None
    template: str | None = None
    notify_failures: bool = False
    feed: str | None = None  # add-feed's URL, remove-feed's ID or URL


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked, where. ``sink`` and ``target`` name the room as a destination."""

    sink: str
    target: str
    user: str
    may_manage: bool
    destination_options: Mapping[str, object] = field(default_factory=dict)

    @property
    def destination_id(self) -> str:
        return Destination.chat_id(self.sink, self.target)

    def destination(self) -> Destination:
        return Destination(
            self.destination_id, self.sink, self.target, dict(self.destination_options)
        )


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    ok: bool = True


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_kinds(value: str) -> frozenset[EventKind]:
    kinds: set[EventKind] = set()
    for name in _split_list(value):
        try:
            kinds.add(EventKind(name.lower()))
        except ValueError:
            known = ", ".join(k.value for k in EventKind)
            raise CommandError(f"unknown event kind {name!r}; kinds are: {known}") from None
    return frozenset(kinds)


def parse_amount(value: str, name: str = "min_amount") -> float:
    """``1000000``, ``1,000,000``, ``$1M``, ``2.5k``, ``1B``: a finite amount ≥ 0."""
    cleaned = value.replace(",", "").replace("_", "").lstrip("$")
    multiplier = 1.0
    if cleaned[-1:].lower() in ("k", "m", "b"):
        multiplier = {"k": 1e3, "m": 1e6, "b": 1e9}[cleaned[-1].lower()]
        cleaned = cleaned[:-1]
    try:
        amount = float(cleaned) * multiplier
    except ValueError:
        amount = math.nan
    if not math.isfinite(amount) or amount < 0 or not cleaned[:1].isdigit():
        raise CommandError(f"{name} must be an amount like 1000000 or 1M, not {value!r}")
    return amount


def parse_updates(value: str) -> UpdateStyle:
    """``edit``, ``reply`` or ``new`` (any case)."""
    try:
        return UpdateStyle(value.strip().lower())
    except ValueError:
        known = ", ".join(u.value for u in UpdateStyle)
        raise CommandError(f"updates must be one of {known}, not {value!r}") from None


def parse_keywords(value: str, name: str) -> tuple[str, ...]:
    """Comma-separated keywords, each checked by the matching engine."""
    words = _split_list(value)
    try:
        return check_keywords(words)
    except ValueError as exc:
        raise CommandError(f"{name}: {exc}") from None


def _options(pairs: list[str]) -> dict[str, str]:
    """``name=value`` words as a mapping; a name given twice or with no value is
    refused (which one would win is a guess, and an empty value sets nothing)."""
    options: dict[str, str] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name in options:
            raise CommandError(f"{name}= is given twice; give each option once")
        if not value.strip():
            raise CommandError(f"{name}= needs a value (leave the option out for the default)")
        options[name] = value
    return options


def parse(text: str) -> Command:
    """Parse the words after the command prefix."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"cannot read that command: {exc}") from None
    if not words:
        return Command("help")
    verb, args = words[0].lower(), words[1:]
    if verb not in VERBS:
        raise CommandError(f"unknown command {verb!r}. Try: help")
    if verb in ("add-feed", "remove-feed"):
        return parse_feed(verb, args)
    if verb in ("help", "topics", "list", "feeds"):
        if args:
            raise CommandError(f"{verb} takes no arguments")
        return Command(verb)
    positional = [a for a in args if "=" not in a]
    options = _options([a for a in args if "=" in a])
    if len(positional) != 1:
        raise CommandError(
            f"usage: {verb} TOPIC"
            + (
                " [kinds=…] [keywords=…] [min_change=…] [updates=…]"
                if verb == "subscribe"
                else "|all"
            )
        )
    if verb == "unsubscribe":
        if options:
            raise CommandError("unsubscribe takes only a topic (or all)")
        return Command(verb, topic=positional[0])
    return build_subscribe(
        positional[0],
        kinds=options.pop("kinds", ""),
        keywords=options.pop("keywords", ""),
        exclude=options.pop("exclude", ""),
        min_amount=options.pop("min_amount", ""),
        min_change=options.pop("min_change", ""),
        updates=options.pop("updates", ""),
        **{name: options.pop(name, "") for name in ("digest", "quiet", "tz", "urgent")},
        template=options.pop("template", ""),
        notify_failures=options.pop("notify_failures", ""),
        unknown=options,
    )


def parse_feed(verb: str, args: list[str]) -> Command:
    """``add-feed URL [TOPIC] [updates=…]`` or ``remove-feed ID|URL``."""
    positional = [a for a in args if "=" not in a or "://" in a]
    options = _options([a for a in args if a not in positional])
    if verb == "remove-feed":
        if len(positional) != 1 or options:
            raise CommandError("usage: remove-feed ID|URL")
        return Command(verb, feed=positional[0])
    return build_add_feed(
        positional[0] if positional else "",
        positional[1] if len(positional) == 2 else "",
        updates=options.pop("updates", ""),
        unknown=options,
        extra=positional[2:],
    )


def build_add_feed(
    url: str,
    topic: str = "",
    *,
    updates: str = "",
    unknown: Mapping[str, str] | None = None,
    extra: list[str] | None = None,
) -> Command:
    """An add-feed command from its fields (what Discord's slash options give)."""
    if not url or extra:
        raise CommandError("usage: add-feed URL [TOPIC] [updates=edit|reply|new]")
    if unknown:
        raise CommandError(f"unknown option(s) {', '.join(sorted(unknown))}; options are updates")
    return Command(
        "add-feed",
        topic=topic.lower() or None,
        updates=parse_updates(updates) if updates else None,
        feed=url,
    )


def build_subscribe(
    topic: str,
    *,
    kinds: str = "",
    keywords: str = "",
    exclude: str = "",
    min_amount: str = "",
    min_change: str = "",
    updates: str = "",
    digest: str = "",
    quiet: str = "",
    tz: str = "",
    urgent: str = "",
    template: str = "",
    notify_failures: str = "",
    unknown: Mapping[str, str] | None = None,
) -> Command:
    """A subscribe command from its fields (what Discord's slash options give)."""
    if unknown:
        names = ", ".join(sorted(unknown))
        raise CommandError(
            f"unknown option(s) {names}; options are kinds, keywords, exclude, "
            "min_amount, min_change, updates, digest, quiet, tz, urgent, template, "
            "notify_failures"
        )
    try:
        schedule = parse_schedule(digest=digest, quiet=quiet, tz=tz, urgent=urgent)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return Command(
        "subscribe",
        topic=topic,
        kinds=parse_kinds(kinds),
        include=parse_keywords(keywords, "keywords"),
        exclude=parse_keywords(exclude, "exclude"),
        min_amount=parse_amount(min_amount) if min_amount else None,
        min_change=parse_amount(min_change, "min_change") if min_change else None,
        updates=parse_updates(updates) if updates else None,
        schedule=schedule,
        template=template.strip() or None,
        notify_failures=parse_yes_no(notify_failures, "notify_failures"),
    )


def parse_yes_no(value: str, name: str) -> bool:
    """``yes``/``no`` (also true/false, on/off, 1/0); empty is no."""
    word = value.strip().lower()
    if word in ("", "no", "false", "off", "0"):
        return False
    if word in ("yes", "true", "on", "1"):
        return True
    raise CommandError(f"{name} must be yes or no, not {value!r}")


class CommandService:
    """Executes commands against the store, knowing the configured topics."""

    def __init__(
        self,
        *,
        store: Store,
        topics: Mapping[str, str],
        on_change: Callable[[], Awaitable[None]] | None = None,
        templates: Collection[str] = (),
        feeds: ChatFeeds | None = None,
    ) -> None:
        self.store = store
        self.topics = dict(topics)
        self.templates = frozenset(templates)
        self._on_change = on_change
        self.feeds = feeds

    def topic_names(self, prefix: str = "") -> list[str]:
        """For autocomplete."""
        return sorted(t for t in self.topics if t.startswith(prefix.lower()))

    async def handle_text(self, text: str, ctx: CommandContext) -> Reply:
        try:
            return await self.execute(parse(text), ctx)
        except CommandError as exc:
            return Reply(str(exc), ok=False)

    async def execute(self, command: Command, ctx: CommandContext) -> Reply:
        if command.verb in MUTATING and not ctx.may_manage:
            # The asker is not named: a display name is a stranger's text (markdown, a
            # masked link) that the reply would show as the bot's own words.
            return Reply(f"Sorry, only room moderators can {command.verb}.", ok=False)
        try:
            handler = getattr(self, f"_do_{command.verb.replace('-', '_')}")
            reply: Reply = await handler(command, ctx)
            return reply
        except (CommandError, FeedRefused) as exc:
            return Reply(str(exc), ok=False)

    async def _do_help(self, command: Command, ctx: CommandContext) -> Reply:
        return Reply(HELP)

    async def _do_topics(self, command: Command, ctx: CommandContext) -> Reply:
        if not self.topics:
            return Reply("No topics are configured.")
        lines = [
            f"- {name}: {desc}" if desc else f"- {name}"
            for name, desc in sorted(self.topics.items())
        ]
        return Reply("Topics:\n" + "\n".join(lines))

    async def _do_list(self, command: Command, ctx: CommandContext) -> Reply:
        subs = await self.store.list_subscriptions(ctx.destination_id)
        if not subs:
            return Reply("This room has no subscriptions. Try: subscribe TOPIC")
        return Reply("Subscriptions:\n" + "\n".join(f"- {describe(s)}" for s in subs))

    async def _do_subscribe(self, command: Command, ctx: CommandContext) -> Reply:
        topic = (command.topic or "").lower()
        if topic not in self.topics:
            known = ", ".join(sorted(self.topics)) or "none"
            raise CommandError(f"unknown topic {command.topic!r}; topics are: {known}")
        if command.template is not None and command.template not in self.templates:
            known = ", ".join(sorted(self.templates)) or "none (the operator defined none)"
            raise CommandError(f"unknown template {command.template!r}; templates are: {known}")
        await self.store.upsert_destination(
            Destination(ctx.destination_id, ctx.sink, ctx.target, dict(ctx.destination_options))
        )
        sub = await self.store.add_subscription(
            Subscription(
                destination_id=ctx.destination_id,
                topic=topic,
                kinds=command.kinds,
                include=command.include,
                exclude=command.exclude,
                min_amount=command.min_amount,
                min_change=command.min_change,
                updates=command.updates,
                schedule=command.schedule,
                template=command.template,
                notify_failures=command.notify_failures,
                created_by=ctx.user,
            )
        )
        await self._changed()
        return Reply(f"Subscribed: {describe(sub)}")

    async def _do_unsubscribe(self, command: Command, ctx: CommandContext) -> Reply:
        topic = (command.topic or "").lower()
        if topic == "all":  # every topic; the room's feeds stay until remove-feed
            room = ctx.destination_id
            topics = {s.topic for s in await self.store.list_subscriptions(room) if s.topic}
            count = 0
            for name in sorted(topics):
                count += await self.store.remove_subscriptions(room, topic=name)
        else:
            count = await self.store.remove_subscriptions(ctx.destination_id, topic=topic)
        await self._changed()
        if not count:
            return Reply(f"This room was not subscribed to {topic}.", ok=False)
        return Reply(
            f"Unsubscribed from {topic} ({count} subscription{'s' if count != 1 else ''})."
        )

    async def _do_add_feed(self, command: Command, ctx: CommandContext) -> Reply:
        feeds = self._feeds()
        return Reply(
            await feeds.add(
                command.feed or "",
                topic=command.topic,
                updates=command.updates,
                topics=self.topics,
                ctx=ctx,
            )
        )

    async def _do_remove_feed(self, command: Command, ctx: CommandContext) -> Reply:
        return Reply(await self._feeds().remove(command.feed or "", ctx))

    async def _do_feeds(self, command: Command, ctx: CommandContext) -> Reply:
        return Reply(await self._feeds().listing(ctx))

    def _feeds(self) -> ChatFeeds:
        if self.feeds is None:
            raise CommandError("Adding feeds from chat is not available here.")
        return self.feeds

    async def forget_room(self, sink: str, target: str, *, reason: str) -> int:
        """The bot left or was removed: drop the room's subscriptions and feeds."""
        room = Destination.chat_id(sink, target)
        for added in await self.store.list_chat_sources(room):
            await self.store.remove_chat_source(added.id, reason=reason)
        count = await self.store.remove_destination(room, reason=reason)
        await self._changed()
        return count

    async def _changed(self) -> None:
        if self._on_change is not None:
            await self._on_change()


def describe(sub: Subscription) -> str:
    parts = [sub.topic or (f"source {sub.source}" if sub.source else "everything")]
    if sub.kinds:
        parts.append("kinds=" + ",".join(sorted(k.value for k in sub.kinds)))
    if sub.include:
        parts.append("keywords=" + ",".join(sub.include))
    if sub.exclude:
        parts.append("exclude=" + ",".join(sub.exclude))
    if sub.min_amount is not None:
        parts.append(f"min_amount={sub.min_amount:,.0f}")
    if sub.min_change is not None:
        parts.append(f"min_change={sub.min_change:,.0f}")
    if sub.updates is not None:
        parts.append(f"updates={sub.updates.value}")
    if sub.schedule is not None:
        parts.append(sub.schedule.describe())
    if sub.template is not None:
        parts.append(f"template={sub.template}")
    if sub.notify_failures:
        parts.append("notify_failures=yes")
    return " ".join(parts)
