"""OPML subscription lists in and out: ``alerts import-opml`` and ``alerts export-opml``.

OPML 2.0 (http://opml.org/spec2.opml) and the 1.0/1.1 files readers still write.
What counts as a feed follows what readers export (Feedly, Inoreader, NetNewsWire,
flat lists): any ``<outline>`` with an ``xmlUrl`` (any capitalisation, any or no
``type``), as listparser's detection does. Outlines without one are folders; an
``include``/``link`` outline (another list) is noted, never fetched; ``isComment``
outlines are skipped.

Import writes a ``sources.d/`` drop-in: one ``feed`` source per distinct URL, its id
derived from its title (lower-case, unique, valid), its topics from the outline's
``category`` attribute (the last part of each slash path) and its folder, plus
``--topic``; topics not yet defined are created as ``[topics.X]``. The drop-in is
checked with the existing config (``load_config``, what ``alerts check`` runs) before
it is written, and an existing file is replaced only when asked.

The file is parsed with defusedxml: a DTD that declares entities (billion laughs,
external entities) is refused, never expanded. Everything in it is a stranger's
text: it is only ever written into TOML strings by a TOML writer.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import defusedxml
import defusedxml.ElementTree as SafeET
import tomli_w

from alerts.config import Config, load_config
from alerts.config_files import find_files
from alerts.errors import ConfigError, OpmlError

MAX_BYTES = 10_000_000
MAX_NAME_CHARS = 200
MAX_ID_CHARS = 64
SPEC = "http://opml.org/spec2.opml"
ID_ATTRIBUTE = "alertsId"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


# --- reading OPML ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One feed outline: its URL, title, topic labels (folder, categories) and, when
    the file came from ``export-opml``, the source id it had."""

    url: str
    title: str
    labels: tuple[str, ...] = ()
    source_id: str = ""


@dataclass(frozen=True, slots=True)
class OpmlList:
    """A parsed file: its feeds, notes on what was left out, and the longer title of
    each folder whose ``title`` differs from its ``text`` (as ``export-opml`` writes a
    topic's description)."""

    title: str
    feeds: tuple[OpmlFeed, ...]
    notes: tuple[str, ...] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)


def read_opml(path: Path) -> OpmlList:
    """Read and parse an OPML file; ``OpmlError`` (exit 2) says what is wrong."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise OpmlError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_BYTES:
        raise OpmlError(f"{path}: larger than {MAX_BYTES:,} bytes; not an OPML subscription list?")
    return parse_opml(data, origin=str(path))


def parse_opml(data: bytes, *, origin: str) -> OpmlList:
    """The feeds of an OPML document (``data`` as read from the file)."""
    root = _parse_xml(data, origin)
    if _local(root.tag) != "opml":
        raise OpmlError(f"{origin}: not OPML: the root element is <{_local(root.tag)}>, not <opml>")
    version = root.get("version", "")
    if version and not re.fullmatch(r"[12]\.\d+", version):
        raise OpmlError(f"{origin}: unsupported OPML version {version!r} (1.0, 1.1 or 2.0)")
    body = next((c for c in root if _local(c.tag) == "body"), None)
    if body is None:
        raise OpmlError(f"{origin}: not OPML: no <body> element")
    head = next((c for c in root if _local(c.tag) == "head"), None)
    title = _text(head.findtext("title") if head is not None else None)
    notes: list[str] = []
    descriptions: dict[str, str] = {}
    feeds = list(_walk(body, folder="", notes=notes, descriptions=descriptions))
    if not feeds and notes:
        raise OpmlError(f"{origin}: no usable feeds: " + "; ".join(notes))
    if not feeds:
        raise OpmlError(f"{origin}: no feeds in this file (no <outline> with an xmlUrl)")
    return OpmlList(title, tuple(feeds), tuple(notes), descriptions)


def _parse_xml(data: bytes, origin: str) -> ET.Element:
    try:
        return SafeET.fromstring(data)
    except defusedxml.EntitiesForbidden as exc:
        raise OpmlError(
            f"{origin}: refused: the file declares XML entities ({exc.name!r}); "
            "OPML needs none, and expanding them is a known attack"
        ) from exc
    except defusedxml.ExternalReferenceForbidden as exc:
        raise OpmlError(f"{origin}: refused: the file refers to external resources") from exc
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise OpmlError(
            f"{origin}: line {line}, column {column + 1}: not well-formed XML: {reason}"
        ) from exc


def _local(tag: str) -> str:
    return tag.rpartition("}")[2].lower()


def _attr(outline: ET.Element, name: str) -> str:
    """An attribute by name, any capitalisation (``xmlUrl``, ``xmlurl``, ``XMLURL``)."""
    wanted = name.lower()
    return next((v for k, v in outline.attrib.items() if _local(k) == wanted), "")


def _text(value: str | None) -> str:
    """One line of display text: whitespace runs and control characters as one space."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in value or "")
    return " ".join(cleaned.split())


def _walk(
    parent: ET.Element, *, folder: str, notes: list[str], descriptions: dict[str, str]
) -> Iterator[OpmlFeed]:
    for outline in parent:
        if _local(outline.tag) != "outline" or _attr(outline, "isComment").lower() == "true":
            continue
        label = _text(_attr(outline, "text") or _attr(outline, "title"))
        kind = _attr(outline, "type").lower()
        xml_url = _attr(outline, "xmlUrl").strip()
        if xml_url and kind != "source":
            yield from _feed(outline, xml_url, folder, notes)
        elif kind in ("include", "link", "source") and (_attr(outline, "url") or xml_url):
            notes.append(f"{label or 'an outline'}: another subscription list, not followed")
        else:
            title = _text(_attr(outline, "title"))
            if label and title and title != label:
                descriptions.setdefault(label, title)
            yield from _walk(
                outline, folder=label or folder, notes=notes, descriptions=descriptions
            )


def _feed(outline: ET.Element, xml_url: str, folder: str, notes: list[str]) -> Iterator[OpmlFeed]:
    title = _text(_attr(outline, "title") or _attr(outline, "text"))[:MAX_NAME_CHARS]
    url = _http_url(xml_url)
    if url is None:
        notes.append(f"{title or xml_url}: skipped: {_text(xml_url)[:100]!r} is not an http(s) URL")
        return
    labels = [folder] if folder else []
    labels += categories(_attr(outline, "category"))
    yield OpmlFeed(
        url=url, title=title, labels=tuple(labels), source_id=_attr(outline, ID_ATTRIBUTE)
    )


def categories(value: str) -> list[str]:
    """OPML 2.0 ``category``: comma-separated tags or slash-delimited paths
    (``/Boston/Weather``); each gives its last part."""
    parts = (c.strip().rstrip("/").rpartition("/")[2] for c in value.split(","))
    return [_text(p) for p in parts if _text(p)]


def _http_url(raw: str) -> str | None:
    """An absolute http(s) URL, with the old ``feed:`` forms turned into http(s)."""
    url = raw.strip()
    if url.lower().startswith("feed://"):
        url = "http://" + url[7:]
    elif url.lower().startswith("feed:"):
        url = url[5:]
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises ValueError
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


# --- planning the drop-in -------------------------------------------------------------------


def slug(text: str) -> str:
    """Lower-case ASCII letters and digits; every other run of characters becomes one
    ``-`` (accents are dropped, other scripts vanish)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


@dataclass
class ImportPlan:
    """What the drop-in will hold, and what was left out and why."""

    topics: dict[str, str] = field(default_factory=dict)  # new topic -> description
    sources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_import(
    opml: OpmlList, *, existing: Config | None, extra_topic: str | None = None
) -> ImportPlan:
    """Sources and new topics for ``opml`` on top of the ``existing`` config."""
    plan = ImportPlan(notes=list(opml.notes))
    known_topics = dict(existing.topic_descriptions) if existing else {}
    taken = set(existing.sources) | set(existing.disabled) if existing else set()
    configured = {s.url: s.id for s in existing.sources.values()} if existing else {}
    topic_of = _TopicNames(known_topics, plan.topics, opml.descriptions)
    forced = [topic_of.named(extra_topic)] if extra_topic else []
    merged: dict[str, dict[str, Any]] = {}
    for feed in opml.feeds:
        if feed.url in configured:
            plan.notes.append(
                f"{feed.title or feed.url}: already configured as {configured[feed.url]!r}"
            )
            continue
        topics = forced + [topic_of.label(label) for label in feed.labels]
        if feed.url in merged:
            before = merged[feed.url].get("topics", [])
            if topics:
                merged[feed.url]["topics"] = list(dict.fromkeys(before + topics))
            continue
        source: dict[str, Any] = {"id": _unique_id(feed, taken), "kind": "feed", "url": feed.url}
        if feed.title and feed.title != source["id"]:
            source["name"] = feed.title
        if topics:
            source["topics"] = list(dict.fromkeys(topics))
        merged[feed.url] = source
    plan.sources = list(merged.values())
    return plan


class _TopicNames:
    """Turns folder names and categories into topic names, creating the missing ones."""

    def __init__(
        self, known: Mapping[str, str], created: dict[str, str], descriptions: Mapping[str, str]
    ) -> None:
        self.known = known
        self.created = created
        self.descriptions = descriptions
        self.by_label: dict[str, str] = {}

    def named(self, name: str) -> str:
        if not _ID.match(name):
            raise OpmlError(
                f"--topic {name!r}: a topic name is lower-case letters, digits, '-', '_' or '.'"
            )
        if name not in self.known:
            self.created.setdefault(name, name)
        return name

    def label(self, label: str) -> str:
        """The topic for a folder name or category: itself when it is a valid name
        (as ``export-opml`` writes them), else its slug."""
        if label not in self.by_label:
            valid = _ID.match(label) is not None
            name = label if valid else slug(label)[:MAX_ID_CHARS].strip("-") or self._numbered()
            if name not in self.known and name not in self.created:
                self.created[name] = self.descriptions.get(label, label)
            self.by_label[label] = name
        return self.by_label[label]

    def _numbered(self) -> str:
        n = 1
        while f"folder-{n}" in self.known or f"folder-{n}" in self.created:
            n += 1
        return f"folder-{n}"


def _unique_id(feed: OpmlFeed, taken: set[str]) -> str:
    if _ID.match(feed.source_id) and feed.source_id not in taken:
        base = feed.source_id
    else:
        host = urlsplit(feed.url).hostname or "feed"
        base = slug(feed.title)[: MAX_ID_CHARS - 4].strip("-") or slug(host) or "feed"
    candidate, n = base, 1
    while candidate in taken or not _ID.match(candidate):
        n += 1
        candidate = f"{base[: MAX_ID_CHARS - len(str(n)) - 1]}-{n}"
    taken.add(candidate)
    return candidate


def render_dropin(plan: ImportPlan, *, origin: str, now: datetime) -> str:
    """The drop-in's TOML text: a header comment, new topics, then the sources."""
    header = (
        f"# Imported by `alerts import-opml` from {_text(origin)} on {now:%Y-%m-%d}:\n"
        f"# {len(plan.sources)} feed source(s), {len(plan.topics)} new topic(s). "
        "Review them, then run `alerts check`.\n\n"
    )
    document: dict[str, Any] = {}
    if plan.topics:
        document["topics"] = {name: {"description": d} for name, d in plan.topics.items()}
    document["sources"] = plan.sources
    return header + tomli_w.dumps(document)


# --- the import, checked before it is written ----------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_opml`` did: ``sources`` written to ``out`` (none: nothing was
    written), the ``topics`` it created and ``notes`` on what it left out."""

    out: Path
    sources: int
    topics: tuple[str, ...]
    notes: tuple[str, ...]


def import_opml(
    path: Path,
    *,
    config_dir: Path,
    out: Path,
    topic: str | None,
    force: bool,
    now: datetime,
) -> ImportResult:
    """Write ``out`` from the OPML file at ``path``, checked against the config in
    ``config_dir`` as ``alerts check`` would check it; nothing is written if it fails."""
    opml = read_opml(path)
    if out.exists() and not force:
        raise OpmlError(f"{out}: already exists; --force replaces it")
    with tempfile.TemporaryDirectory(prefix="alerts-import-") as tmp:
        trial = Path(tmp) / "config"
        _copy_config(config_dir, trial, leave_out=out)
        existing = _load(trial, config_dir) if find_files(trial)[0] else None
        plan = plan_import(opml, existing=existing, extra_topic=topic)
        if not plan.sources:
            return ImportResult(out, 0, (), tuple(plan.notes))
        text = render_dropin(plan, origin=path.name, now=now)
        (trial / "sources.d").mkdir(parents=True, exist_ok=True)
        (trial / "sources.d" / out.name).write_text(text, encoding="utf-8")
        _load(trial, config_dir)
    _write_atomically(out, text)
    return ImportResult(out, len(plan.sources), tuple(plan.topics), tuple(plan.notes))


def _copy_config(config_dir: Path, trial: Path, *, leave_out: Path) -> None:
    """Copy the config files (not ``leave_out``, the file being replaced) to ``trial``."""
    (trial / "sources.d").mkdir(parents=True)
    skip = leave_out.resolve()
    for file in find_files(config_dir)[0]:
        if file.resolve() == skip:
            continue
        target = trial / file.relative_to(config_dir)
        shutil.copyfile(file, target)


def _load(trial: Path, config_dir: Path) -> Config:
    try:
        return load_config(trial)
    except ConfigError as exc:
        shown = [p.replace(str(trial), str(config_dir)) for p in exc.problems]
        raise ConfigError(shown) from exc


def _write_atomically(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- export --------------------------------------------------------------------------------


def export_opml(config: Config, *, now: datetime) -> bytes:
    """The configured ``feed`` sources as OPML 2.0: one folder per topic (a feed in
    several topics sits in its first and lists all of them in ``category``), feeds
    without a topic at the top. Source URLs are written as configured: the file may
    hold credentials if the URLs do."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = "alerts feed sources"
    ET.SubElement(head, "dateCreated").text = format_datetime(now, usegmt=True)
    ET.SubElement(head, "docs").text = SPEC
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for spec in config.sources.values():
        if spec.kind != "feed":
            continue
        parent = body
        if spec.topics:
            first = spec.topics[0]
            if first not in folders:
                title = config.topics[first].description if first in config.topics else ""
                folders[first] = ET.SubElement(body, "outline", text=first, title=title or first)
            parent = folders[first]
        attrs = {"type": "rss", "text": spec.label, "title": spec.label, "xmlUrl": spec.url}
        if spec.topics:
            attrs["category"] = ",".join(spec.topics)
        attrs[ID_ATTRIBUTE] = spec.id
        ET.SubElement(parent, "outline", attrs)
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{text}\n'.encode()
