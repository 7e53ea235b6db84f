"""Finding, reading and parsing the operator's TOML files, refusing what is broken.

A config file is refused, with a reason that names it, when it is: missing behind
a symbolic link (dangling, or a loop), not a regular file, larger than
``MAX_FILE_BYTES``, not UTF-8, empty (or only comments), not TOML, or nested deeper
than ``MAX_DEPTH`` levels. A UTF-8 byte order mark is skipped and CRLF line ends
are TOML. A key defined twice is reported with its key path.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.errors import key_path

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 16
_LOCATION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_DECLARED_TWICE = re.compile(r"Cannot declare \((.*)\) twice")
_PROBE = "__alerts_probe__"


@dataclass(frozen=True)
class ParsedFile:
    """One config file: how problems name it, and its TOML document."""

    origin: str
    data: dict[str, Any]


def display(path: Path) -> str:
    """``path`` relative to the working directory when under it (symlinks kept)."""
    absolute = Path(os.path.abspath(path))
    try:
        shown = str(absolute.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shown if shown.isprintable() else json.dumps(shown)


def read_config_dir(config_dir: Path) -> tuple[list[ParsedFile], list[str]]:
    """Every file of the directory, parsed; and every problem found on the way."""
    paths, problems = find_files(config_dir)
    parsed: list[ParsedFile] = []
    for path in paths:
        origin = display(path)
        text, problem = read_text(path)
        if problem is None and text is not None:
            data, problem = parse_toml(text)
            if data is not None:
                parsed.append(ParsedFile(origin, data))
        if problem is not None:
            problems.append(f"{origin}: {problem}")
    return parsed, problems


def find_files(config_dir: Path) -> tuple[list[Path], list[str]]:
    """``alerts.toml`` (when present, even as a broken link) and ``sources.d/*.toml``
    in name order, skipping names that start with ``.``."""
    where = display(config_dir)
    kind = _kind(config_dir)
    if kind != "directory":
        why = "not a directory" if kind else _missing(config_dir)
        return [], [f"{where}: {why}; no alerts.toml and no sources.d/*.toml found"]
    main = config_dir / "alerts.toml"
    paths = [main] if os.path.lexists(main) else []
    dropins = config_dir / "sources.d"
    if os.path.lexists(dropins):
        if _kind(dropins) != "directory":
            return paths, [f"{display(dropins)}: {_link_problem(dropins) or 'not a directory'}"]
        paths += sorted(p for p in dropins.glob("*.toml") if not p.name.startswith("."))
    if not paths:
        return [], [f"{where}: no alerts.toml and no sources.d/*.toml found"]
    return paths, []


def _kind(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _missing(path: Path) -> str:
    problem = _link_problem(path)
    return "no such directory" if problem is None or not os.path.islink(path) else problem


def _link_problem(path: Path) -> str | None:
    """Why a path that exists as a name cannot be opened, if it is a broken link."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)!r}, which does not exist"
        return f"cannot read: {exc.strerror}"
    return None


def read_text(path: Path) -> tuple[str | None, str | None]:
    """The file's text (BOM skipped), or why it cannot be used."""
    problem = _link_problem(path)
    if problem is not None:
        return None, problem
    if _kind(path) != "file":
        return None, "not a regular file"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    if len(raw) > MAX_FILE_BYTES:
        return None, f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; is this a config file?"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return None, "empty file"
    return text, None


def parse_toml(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The TOML document, or why it is not one (with the key path where known)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, _decode_problem(text, str(exc))
    except RecursionError:
        line = _deep_line(text)
        path = key_path(_statement_path(text, line)) if line else ""
        return None, f"{path or 'a value'}: nested more than {MAX_DEPTH} levels deep" + (
            f" (line {line})" if line else ""
        )
    if not data:
        return None, "defines nothing (only comments); remove it or rename it to disable it"
    deep = _too_deep(data, ())
    if deep is not None:
        return None, f"{key_path(deep[:3])}: nested more than {MAX_DEPTH} levels deep"
    return data, None


def _deep_line(text: str) -> int:
    """The line of the statement that opens more than ``MAX_DEPTH`` arrays or inline
    tables (0: none found)."""
    for start, depth in _statements(text):
        if depth > MAX_DEPTH:
            return start
    return 0


def _statement_start(text: str, line: int) -> int:
    """The line where the statement that ``line`` belongs to begins."""
    starts = [start for start, _ in _statements(text)]
    return starts[line - 1] if 0 < line <= len(starts) else line


def _statements(text: str) -> list[tuple[int, int]]:
    """For each line: where its statement began (a multi-line array continues one),
    and the deepest nesting of brackets reached on it. Brackets in strings and
    comments may mislead it: it only helps to name a key in an error."""
    out: list[tuple[int, int]] = []
    depth, start = 0, 0
    for number, line in enumerate(text.splitlines(), start=1):
        start = number if depth <= 0 else start
        deepest = depth
        for char in line:
            depth += 1 if char in "[{" else -1 if char in "]}" else 0
            deepest = max(deepest, depth)
        out.append((start, deepest))
    return out


def _too_deep(value: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...] | None:
    """The key path of the first value nested deeper than ``MAX_DEPTH``."""
    if len(path) > MAX_DEPTH:
        return path
    children: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        found = _too_deep(child, (*path, key))
        if found is not None:
            return found
    return None


def _decode_problem(text: str, message: str) -> str:
    located = _LOCATION.search(message)
    if located is None:
        return f"invalid TOML: {message}"
    line = int(located[1])
    reason = message[: located.start()]
    twice = _DECLARED_TWICE.match(reason)
    if twice is not None:
        keys = tuple(re.findall(r"'((?:[^'\\]|\\.)*)'", twice[1]))
        return f"{key_path(keys)}: table defined twice (line {line})"
    if reason.startswith(("Cannot overwrite a value", "Duplicate inline table key")):
        path = key_path(_statement_path(text, line)) or f"line {line}"
        inline = re.match(r"Duplicate inline table key '(.*)'", reason)
        if inline:
            return f"{path}: an inline table defines {inline[1]!r} twice (line {line})"
        return f"{path}: defined twice (line {line})"
    path = key_path(_statement_path(text, _statement_start(text, line)))
    problem = f"invalid TOML: {reason} (line {line}, column {located[2]})"
    return f"{path}: {problem}" if path else problem


def _statement_path(text: str, line: int) -> tuple[str | int, ...]:
    """The key path of the ``key = value`` statement (or table header) on ``line``:
    the table it is in, found by parsing everything before it with a probe key,
    then its own key. Empty when that cannot be worked out."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ()
    statement = lines[line - 1].strip()
    own = _own_key(statement)
    if not own:
        return ()
    if statement.startswith("["):
        return own
    try:
        before = tomllib.loads("\n".join(lines[: line - 1]) + f"\n{_PROBE} = 0\n")
    except (tomllib.TOMLDecodeError, RecursionError):
        return own
    return (*(_probe_path(before) or ()), *own)


def _own_key(statement: str) -> tuple[str | int, ...]:
    """The key a statement sets, parsed by TOML itself (the value is replaced)."""
    header = re.fullmatch(r"\[\[?(.+?)\]\]?\s*(#.*)?", statement)
    source = f"{header[1]} = 0" if header else _key_part(statement) + " = 0"
    try:
        data = tomllib.loads(source)
    except (tomllib.TOMLDecodeError, RecursionError):
        return ()
    path: list[str | int] = []
    while isinstance(data, dict) and len(data) == 1:
        key, data = next(iter(data.items()))
        path.append(key)
    return tuple(path)


def _key_part(statement: str) -> str:
    """What comes before the ``=`` of a statement, quotes respected."""
    quote = ""
    for position, char in enumerate(statement):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "=":
            return statement[:position]
    return statement


def _probe_path(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    if isinstance(value, dict):
        if _PROBE in value:
            return path
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, child in items:
        found = _probe_path(child, (*path, key))
        if found is not None:
            return found
    return None
