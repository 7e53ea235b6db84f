"""One row per class of broken configuration (issue 14), each run through the real
``alerts check`` and ``alerts run`` processes: both exit 2 and name the file, the
key path and the reason, with no traceback and no secret in the output.

A row starts from a valid config directory (``BASE``) and changes some files or
the environment. ``where`` is the file as the command shows it ("" for the
environment), ``path`` the key path (or variable) and ``reason`` a part of the
reason; the three must be on one line of the error.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MAIN = """\
[service]
contact = "mailto:tests@example.org"

[topics.news]
description = "News"

[destinations.console]
sink = "console"

[[routes]]
destination = "console"
topics = ["news"]
"""

FEED = """\
[[sources]]
id = "wire"
kind = "feed"
url = "https://example.org/feed.xml"
topics = ["news"]
"""

BASE = {"alerts.toml": MAIN, "sources.d/news.toml": FEED}
ALERTS = "config/alerts.toml"
NEWS = "config/sources.d/news.toml"
EXTRA = "config/sources.d/extra.toml"
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/SECRET-webhook-token-xyz"


@dataclass(frozen=True)
class Link:
    """A symbolic link to ``target`` (relative to the link's directory)."""

    target: str


@dataclass(frozen=True)
class Dir:
    """A directory where a file is expected."""


Content = str | bytes | Link | Dir | None


@dataclass(frozen=True)
class Row:
    files: dict[str, Content]
    where: str
    path: str
    reason: str
    env: dict[str, str] = field(default_factory=dict)
    secret: str = ""


def feed(**keys: object) -> str:
    """The ``wire`` source with ``keys`` changed (a value of None drops the key)."""
    values: dict[str, object] = {
        "id": '"wire"',
        "kind": '"feed"',
        "url": '"https://example.org/feed.xml"',
        "topics": '["news"]',
    }
    values.update(keys)
    body = "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)
    return f"[[sources]]\n{body}"


def main(extra: str) -> dict[str, Content]:
    return {"alerts.toml": MAIN + extra}


def news(text: str) -> dict[str, Content]:
    return {"sources.d/news.toml": text}


def service(line: str) -> dict[str, Content]:
    """``alerts.toml`` with ``line`` added to its ``[service]`` table."""
    return {"alerts.toml": MAIN.replace("[service]\n", f"[service]\n{line}\n")}


ROWS: dict[str, Row] = {
    # --- keys and types (refused before issue 14 too) ----------------------------------
    "unknown-top-level-key": Row(main("[sourcez]\nx = 1\n"), ALERTS, "sourcez", "unknown key"),
    "unknown-service-key": Row(service("colour = 1"), ALERTS, "service.colour", "unknown key"),
    "unknown-http-key": Row(main("[http]\nretries = 3\n"), ALERTS, "http.retries", "unknown key"),
    "unknown-topic-key": Row(
        main("[topics.x]\ncolour = 1\n"), ALERTS, "topics.x.colour", "unknown key"
    ),
    "unknown-route-key": Row(
        main('[[routes]]\ndestination = "console"\nkeywords = ["a"]\n'),
        ALERTS,
        "routes[1].keywords",
        "unknown key",
    ),
    "adapter-option-typo": Row(
        news(feed(max_itemz=5)), NEWS, "sources[0].max_itemz", "unknown key"
    ),
    "sink-option-typo": Row(
        main('[destinations.file]\nsink = "jsonl"\ntarget = "a.jsonl"\nfsynk = false\n'),
        ALERTS,
        "destinations.file.fsynk",
        "unknown key",
    ),
    "wrong-type-number": Row(
        service('jitter = "lots"'),
        ALERTS,
        "service.jitter",
        "must be a number",
    ),
    "wrong-type-int": Row(
        main('[http]\nmax_bytes = "big"\n'), ALERTS, "http.max_bytes", "whole number"
    ),
    "sources-not-an-array": Row(
        news('[sources]\nid = "wire"\n'), NEWS, "sources", "must be an array"
    ),
    "topics-not-a-list": Row(
        news(feed(topics='"news"')), NEWS, "sources[0].topics", "must be an array"
    ),
    "enabled-not-a-bool": Row(
        news(feed(enabled='"yes"')), NEWS, "sources[0].enabled", "true or false"
    ),
    "unknown-event-kind": Row(
        main('[[routes]]\ndestination = "console"\nkinds = ["nwe"]\n'),
        ALERTS,
        "routes[1].kinds[0]",
        "'new'",
    ),
    "source-without-kind": Row(news(feed(kind=None)), NEWS, "sources[0].kind", "required"),
    "destination-without-sink": Row(
        main("[destinations.x]\ntarget = 'y'\n"), ALERTS, "destinations.x.sink", "required"
    ),
    "route-without-destination": Row(
        main('[[routes]]\ntopics = ["news"]\n'), ALERTS, "routes[1].destination", "required"
    ),
    # --- references --------------------------------------------------------------------
    "unknown-topic": Row(
        news(feed(topics='["nope"]')), NEWS, "sources[0].topics[0]", "unknown topic 'nope'"
    ),
    "unknown-source-kind": Row(
        news(feed(kind='"carrier-pigeon"')), NEWS, "sources[0].kind", "unknown source kind"
    ),
    "unknown-sink": Row(
        main('[destinations.x]\nsink = "fax"\n'),
        ALERTS,
        "destinations.x.sink",
        "unknown sink 'fax'",
    ),
    "route-to-unknown-destination": Row(
        main('[[routes]]\ndestination = "nowhere"\n'),
        ALERTS,
        "routes[1].destination",
        "unknown destination 'nowhere'",
    ),
    "route-to-unknown-topic": Row(
        main('[[routes]]\ndestination = "console"\ntopics = ["sport"]\n'),
        ALERTS,
        "routes[1].topics[0]",
        "unknown topic 'sport'",
    ),
    "route-to-unknown-source": Row(
        main('[[routes]]\ndestination = "console"\nsources = ["gone"]\n'),
        ALERTS,
        "routes[1].sources[0]",
        "unknown source 'gone'",
    ),
    # --- names -------------------------------------------------------------------------
    "duplicate-source-id": Row(news(FEED + FEED), NEWS, "sources[1].id", "already defined"),
    "duplicate-source-id-across-files": Row(
        {"sources.d/extra.toml": FEED},
        NEWS,
        "sources[0].id",
        "already defined in config/sources.d/extra.toml",
    ),
    "duplicate-topic-across-files": Row(
        {"sources.d/extra.toml": "[topics.news]\n"}, EXTRA, "topics.news", "already defined"
    ),
    "duplicate-destination-across-files": Row(
        {"sources.d/extra.toml": '[destinations.console]\nsink = "console"\n'},
        EXTRA,
        "destinations.console",
        "already defined",
    ),
    "service-key-in-two-files": Row(
        {"sources.d/extra.toml": '[service]\ncontact = "other"\n'},
        EXTRA,
        "service.contact",
        "already set in config/alerts.toml",
    ),
    "bad-source-id": Row(news(feed(id='"Has Spaces"')), NEWS, "sources[0].id", "lower-case"),
    "bad-topic-name": Row(main('[topics."Big News"]\n'), ALERTS, 'topics."Big News"', "lower-case"),
    "reserved-topic-name": Row(main("[topics.all]\n"), ALERTS, "topics.all", "reserved"),
    "bad-destination-name": Row(
        main('[destinations."discord:1"]\nsink = "console"\n'),
        ALERTS,
        'destinations."discord:1"',
        "lower-case",
    ),
    # --- values ------------------------------------------------------------------------
    "interval-under-30s": Row(
        news(FEED + feed(id='"b"') + feed(id='"c"', interval='"10s"')),
        NEWS,
        "sources[2].interval",
        "at least 30 s",
    ),
    "default-interval-under-30s": Row(
        service('default_interval = "5s"'),
        ALERTS,
        "service.default_interval",
        "at least 30 s",
    ),
    "duration-not-a-duration": Row(
        news(feed(interval='"soon"')), NEWS, "sources[0].interval", "expected a duration"
    ),
    "interval-overflows": Row(
        news(feed(interval='"99999999999d"')), NEWS, "sources[0].interval", "at most 366 days"
    ),
    "interval-inf-string": Row(
        news(feed(interval='"inf"')), NEWS, "sources[0].interval", "expected a duration"
    ),
    "interval-inf": Row(news(feed(interval="inf")), NEWS, "sources[0].interval", "finite"),
    "interval-nan": Row(news(feed(interval="nan")), NEWS, "sources[0].interval", "finite"),
    "max-backoff-negative": Row(
        service("max_backoff = -60"),
        ALERTS,
        "service.max_backoff",
        "must not be negative",
    ),
    "timeout-zero": Row(main("[http]\ntimeout = 0\n"), ALERTS, "http.timeout", "more than 0 s"),
    "timeout-negative": Row(main("[http]\ntimeout = -5\n"), ALERTS, "http.timeout", "negative"),
    "lease-zero": Row(
        service('delivery_lease = "0s"'),
        ALERTS,
        "service.delivery_lease",
        "more than 0 s",
    ),
    "jitter-out-of-range": Row(
        service("jitter = 0.9"),
        ALERTS,
        "service.jitter",
        "less than or equal to 0.5",
    ),
    "too-many-redirects": Row(
        main("[http]\nmax_redirects = 50\n"), ALERTS, "http.max_redirects", "20"
    ),
    "concurrency-zero": Row(
        service("poll_concurrency = 0"),
        ALERTS,
        "service.poll_concurrency",
        "greater than or equal to 1",
    ),
    "negative-backfill": Row(
        news(feed(backfill=-1)), NEWS, "sources[0].backfill", "greater than or equal to 0"
    ),
    "max-events-zero": Row(
        news(feed(max_events=0)), NEWS, "sources[0].max_events", "greater than or equal to 1"
    ),
    "min-amount-nan": Row(
        main('[[routes]]\ndestination = "console"\nmin_amount = nan\n'),
        ALERTS,
        "routes[1].min_amount",
        "finite",
    ),
    "contact-with-line-break": Row(
        {
            "alerts.toml": MAIN.replace(
                'contact = "mailto:tests@example.org"', 'contact = "a\\r\\nX-Evil: 1"'
            )
        },
        ALERTS,
        "service.contact",
        "control characters",
    ),
    "adapter-option-bad-value": Row(
        news(feed(kind='"petition"', mode='"csv"')), NEWS, "sources[0].mode", "'html'"
    ),
    # --- URLs (issue 10: only http and https) ------------------------------------------------
    "url-without-scheme": Row(
        news(feed(url='"example.org/feed"')), NEWS, "sources[0].url", "absolute URL"
    ),
    "url-file-scheme": Row(
        news(feed(url='"file:///etc/passwd"')), NEWS, "sources[0].url", "scheme 'file'"
    ),
    "url-gopher-scheme": Row(
        news(feed(url='"gopher://example.org/"')), NEWS, "sources[0].url", "scheme 'gopher'"
    ),
    "url-without-host": Row(news(feed(url='"https:///feed"')), NEWS, "sources[0].url", "no host"),
    "url-missing": Row(news(feed(url=None)), NEWS, "sources[0].url", "required"),
    "fingerprint-unknown-field": Row(
        news(feed(fingerprint='["titel"]')),
        NEWS,
        "sources[0].fingerprint[0]",
        "no item field 'titel'",
    ),
    "fingerprint-empty": Row(
        news(feed(fingerprint="[]")), NEWS, "sources[0].fingerprint", "at least 1"
    ),
    # --- files ---------------------------------------------------------------------------
    "no-config-files": Row(
        {"alerts.toml": None, "sources.d/news.toml": None}, "config", "", "no alerts.toml"
    ),
    "broken-toml": Row({"alerts.toml": "[topics.news\n"}, ALERTS, "", "invalid TOML"),
    "empty-file": Row({"sources.d/extra.toml": ""}, EXTRA, "", "empty file"),
    "only-comments": Row({"sources.d/extra.toml": "# nothing yet\n"}, EXTRA, "", "only comments"),
    "oversized-file": Row(
        {"sources.d/extra.toml": "# padding\n" * (10 * 1024 * 1024 // 10)},
        EXTRA,
        "",
        "larger than 4 MiB",
    ),
    "not-utf8": Row({"sources.d/extra.toml": b"[topics.caf\xe9]\n"}, EXTRA, "", "not UTF-8"),
    "duplicate-key": Row(
        news(FEED + FEED.replace('"wire"', '"b"') + 'url = "https://example.org/2"\n'),
        NEWS,
        "sources[1].url",
        "defined twice (line 11)",
    ),
    "duplicate-table": Row(main("[topics.news]\n"), ALERTS, "topics.news", "table defined twice"),
    "deeply-nested-inline-tables": Row(
        news(feed(deep="{a = " * 3000 + "1" + "}" * 3000)),
        NEWS,
        "sources[0].deep",
        "nested more than 16 levels",
    ),
    "nested-past-the-limit": Row(
        news(feed(deep="[" * 20 + "1" + "]" * 20)),
        NEWS,
        "sources[0].deep",
        "nested more than 16 levels",
    ),
    "dropin-symlink-loop": Row(
        {"sources.d/a.toml": Link("b.toml"), "sources.d/b.toml": Link("a.toml")},
        "config/sources.d/a.toml",
        "",
        "symbolic link loop",
    ),
    "dropin-dangling-symlink": Row(
        {"sources.d/extra.toml": Link("gone.toml")}, EXTRA, "", "which does not exist"
    ),
    "main-dangling-symlink": Row(
        {"alerts.toml": Link("elsewhere.toml")}, ALERTS, "", "which does not exist"
    ),
    "main-symlink-loop": Row(
        {"alerts.toml": Link("alerts.toml")}, ALERTS, "", "symbolic link loop"
    ),
    "main-is-a-directory": Row({"alerts.toml": Dir()}, ALERTS, "", "not a regular file"),
    "dropins-not-a-directory": Row(
        {"sources.d/news.toml": None, "sources.d": "x = 1\n"},
        "config/sources.d",
        "",
        "not a directory",
    ),
    # --- destinations, checked by their sink -----------------------------------------
    "jsonl-without-target": Row(
        main('[destinations.file]\nsink = "jsonl"\n'),
        ALERTS,
        "destinations.file.target",
        "required",
    ),
    "matrix-target-not-a-room": Row(
        main('[destinations.room]\nsink = "matrix"\ntarget = "general"\n'),
        ALERTS,
        "destinations.room.target",
        "not a Matrix room",
    ),
    "discord-target-channel-name": Row(
        main('[destinations.chan]\nsink = "discord"\ntarget = "#general"\n'),
        ALERTS,
        "destinations.chan.target",
        "not a Discord channel id",
    ),
    "discord-webhook-url-as-bot-target": Row(
        main(f'[destinations.chan]\nsink = "discord"\ntarget = "{WEBHOOK}"\n'),
        ALERTS,
        "destinations.chan.target",
        "a webhook URL is not a channel id",
        secret="SECRET-webhook-token",
    ),
    "discord-unknown-webhook-name": Row(
        main('[destinations.hook]\nsink = "discord_webhook"\ntarget = "news"\n'),
        ALERTS,
        "destinations.hook.target",
        "no webhook named 'news'",
    ),
    "discord-webhook-not-a-webhook-url": Row(
        main('[destinations.hook]\nsink = "discord_webhook"\ntarget = "news"\n'),
        ALERTS,
        "destinations.hook.target",
        "not a Discord webhook URL",
        env={"ALERTS_DISCORD_WEBHOOKS": '{"news": "https://example.org/SECRET-webhook-token"}'},
        secret="SECRET-webhook-token",
    ),
    "discord-option-in-options-table": Row(
        main(
            '[destinations.chan]\nsink = "discord"\ntarget = "123456789012345678"\noptions = { post = "forum_post" }\n'
        ),
        ALERTS,
        "destinations.chan.options",
        "unknown key",
    ),
    # --- digests, quiet hours and [chat] (issue 16, attacked in review) --------------------
    "digest-hour-25": Row(
        main('[destinations.x]\nsink = "console"\ndigest = "daily@25:00"\n'),
        ALERTS,
        "destinations.x.digest",
        "'25:00' is not a time of day",
    ),
    "digest-unicode-digits": Row(
        main('[destinations.x]\nsink = "console"\ndigest = "daily@1\u0662:3\u0660"\n'),
        ALERTS,
        "destinations.x.digest",
        "is not a time of day",
    ),
    "digest-empty": Row(
        main('[destinations.x]\nsink = "console"\ndigest = ""\n'),
        ALERTS,
        "destinations.x.digest",
        "must not be empty",
    ),
    "digest-not-a-string": Row(
        main('[destinations.x]\nsink = "console"\ndigest = 9\n'),
        ALERTS,
        "destinations.x.digest",
        "must be a string",
    ),
    "digest-on-destination-without-sink": Row(
        main('[destinations.x]\ndigest = "hourly"\n'), ALERTS, "destinations.x.sink", "required"
    ),
    "quiet-empty-window": Row(
        main('[destinations.x]\nsink = "console"\nquiet = "22:00-22:00"\n'),
        ALERTS,
        "destinations.x.quiet",
        "start and end at the same time",
    ),
    "tz-unknown": Row(
        main('[destinations.x]\nsink = "console"\ntz = "Mars/Olympus_Mons"\n'),
        ALERTS,
        "destinations.x.tz",
        "unknown time zone 'Mars/Olympus_Mons'",
    ),
    "tz-empty": Row(
        main('[destinations.x]\nsink = "console"\ntz = ""\n'),
        ALERTS,
        "destinations.x.tz",
        "must not be empty",
    ),
    "tz-longer-than-a-file-name": Row(
        main('[destinations.x]\nsink = "console"\ntz = "' + "A" * 5000 + '"\n'),
        ALERTS,
        "destinations.x.tz",
        "unknown time zone",
    ),
    "tz-not-an-iana-name": Row(
        main('[destinations.x]\nsink = "console"\ntz = "localtime"\n'),
        ALERTS,
        "destinations.x.tz",
        "unknown time zone 'localtime'",
    ),
    "urgent-item-not-a-string": Row(
        main('[destinations.x]\nsink = "console"\nurgent = ["milestone", 3]\n'),
        ALERTS,
        "destinations.x.urgent",
        "item 2 must be a string",
    ),
    "urgent-unknown-kind": Row(
        main('[destinations.x]\nsink = "console"\nurgent = "milestones"\n'),
        ALERTS,
        "destinations.x.urgent",
        "unknown event kind 'milestones'",
    ),
    "chat-key-typo": Row(
        main("[chat]\nallow_add_source = true\n"), ALERTS, "chat.allow_add_source", "unknown key"
    ),
    "chat-no-domains": Row(
        main("[chat]\nallow_add_sources = true\nadd_source_domains = []\n"),
        ALERTS,
        "chat.add_source_domains",
        "required when allow_add_sources = true",
    ),
    "chat-domain-is-a-url": Row(
        main('[chat]\nadd_source_domains = ["https://example.org"]\n'),
        ALERTS,
        "chat.add_source_domains[0]",
        "is not a host name",
    ),
    "chat-quota-zero": Row(
        main("[chat]\nadd_source_quota = 0\n"),
        ALERTS,
        "chat.add_source_quota",
        "greater than or equal to 1",
    ),
    "chat-quota-negative": Row(
        main("[chat]\nadd_source_quota = -3\n"),
        ALERTS,
        "chat.add_source_quota",
        "greater than or equal to 1",
    ),
    "chat-quota-huge": Row(
        main("[chat]\nadd_source_quota = 99999999999999999999999\n"),
        ALERTS,
        "chat.add_source_quota",
        "less than or equal to 1000",
    ),
    "chat-not-a-table": Row(main("[[chat]]\nallow_add_sources = true\n"), ALERTS, "chat", "table"),
    # --- the environment -------------------------------------------------------------------
    "log-level": Row(
        {}, "", "ALERTS_LOG_LEVEL", "must be one of", env={"ALERTS_LOG_LEVEL": "LOUD"}
    ),
    "log-format": Row(
        {}, "", "ALERTS_LOG_FORMAT", "'text' or 'json'", env={"ALERTS_LOG_FORMAT": "xml"}
    ),
    "http-bind": Row(
        {}, "", "ALERTS_HTTP_BIND", "host:port", env={"ALERTS_HTTP_BIND": "everywhere"}
    ),
    "database-url-scheme": Row(
        {},
        "",
        "ALERTS_DATABASE_URL",
        "unsupported scheme 'mysql'",
        env={"ALERTS_DATABASE_URL": "mysql://u:PW-hunter2@db.example.org/alerts"},
        secret="hunter2",
    ),
    "discord-guilds": Row(
        {},
        "",
        "ALERTS_DISCORD_GUILDS[1]",
        "valid integer",
        env={"ALERTS_DISCORD_GUILDS": "123,general"},
    ),
    "discord-webhooks-not-json": Row(
        {},
        "",
        "ALERTS_DISCORD_WEBHOOKS",
        "not valid JSON",
        env={"ALERTS_DISCORD_WEBHOOKS": "news=" + WEBHOOK},
        secret="SECRET-webhook-token",
    ),
    "discord-webhooks-not-an-object": Row(
        {},
        "",
        "ALERTS_DISCORD_WEBHOOKS",
        "valid dictionary",
        env={"ALERTS_DISCORD_WEBHOOKS": f'["{WEBHOOK}"]'},
        secret="SECRET-webhook-token",
    ),
    "matrix-setting-wrong-type": Row(
        {},
        "",
        "ALERTS_MATRIX_MANAGE_POWER_LEVEL",
        "valid integer",
        env={"ALERTS_MATRIX_MANAGE_POWER_LEVEL": "mods"},
    ),
}


def write_tree(config: Path, files: dict[str, Content]) -> None:
    """``BASE`` with ``files`` applied (None removes a file)."""
    tree: dict[str, Content] = {**BASE, **files}
    config.mkdir()
    for name, content in sorted(tree.items(), key=lambda kv: kv[0].count("/")):
        path = config / name
        if content is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(content.target)
        elif isinstance(content, Dir):
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif path.is_dir():
            continue  # a file where a directory was written first: handled by the row
        else:
            path.write_text(content, encoding="utf-8")


def environment(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
    env.update(
        ALERTS_DATABASE_URL=f"sqlite:///{tmp_path / 'alerts.db'}",
        ALERTS_DATA_DIR=str(tmp_path / "data"),
        ALERTS_HTTP_BIND="",
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Result:
    command: str
    returncode: int | None
    stdout: str
    stderr: str


async def alerts(command: str, cwd: Path, env: dict[str, str], timeout_s: float) -> Result:
    """Run ``alerts COMMAND --config config``; a process still running after
    ``timeout_s`` is killed (``returncode`` None)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alerts",
        command,
        "--config",
        "config",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        return Result(command, None, "", f"still running after {timeout_s} s")
    finally:
        if proc.returncode is None:  # timed out or cancelled
            proc.kill()
            await proc.wait()
    return Result(command, proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
async def test_broken_config_is_refused_by_check_and_run(tmp_path: Path, row: Row) -> None:
    write_tree(tmp_path / "config", row.files)
    env = environment(tmp_path, row.env)
    run = asyncio.create_task(alerts("run", tmp_path, env, timeout_s=60))
    check = await alerts("check", tmp_path, env, timeout_s=60)
    # A row that check lets through would keep run running: give it a moment only.
    done = await (alerts_after(run, 5) if check.returncode != 2 else run)
    for result in (check, done):
        output = result.stdout + result.stderr
        assert result.returncode == 2, f"alerts {result.command}: {output}"
        assert "Traceback" not in output, f"alerts {result.command}: {output}"
        assert "alerts: configuration error:" in result.stderr
        assert has_problem(result.stderr, row), f"alerts {result.command}: {result.stderr}"
        if row.secret:
            assert row.secret not in output, f"alerts {result.command} echoed a secret: {output}"
    assert not (tmp_path / "alerts.db").exists(), "run opened the store with a broken config"


async def alerts_after(task: asyncio.Task[Result], timeout_s: float) -> Result:
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout_s)
    except TimeoutError:
        task.cancel()
        return Result("run", None, "", "still running")


def has_problem(stderr: str, row: Row) -> bool:
    """A line of the error starts ``file: key.path: `` (or ``NAME: ``) and gives the reason."""
    prefix = ": ".join(p for p in (row.where, row.path) if p) + ": "
    return any(
        line.strip().startswith(prefix) and row.reason in line for line in stderr.splitlines()
    )
