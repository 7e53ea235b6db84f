"""Sinks that need no chat platform: the console and a JSON-lines file."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import ClassVar, TextIO

from pydantic import BaseModel, ConfigDict

from alerts.contracts import BaseSink, SinkContext, destination_options
from alerts.errors import ConfigError, RetryableSendError
from alerts.model import Delivery, Destination, MessageView, Posted
from alerts.render.text import render_view_text


class ConsoleSink(BaseSink):
    """Print each alert as plain text on standard output.

    ``[destinations.console] sink = "console"``: no options. Useful to watch what the
    service would post, and for the offline demo. What a chat room would see edited
    in place is printed as an edit of the alert it changes (``✎ alert N now
    reads:``), a thread reply as ``↳ reply to alert N:``.
    """

    kind: ClassVar[str] = "console"
    edit_interval_s: ClassVar[float] = 0.0

    def __init__(self, *, context: SinkContext, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, delivery: Delivery) -> str | None:
        return (
            await self.post(delivery, MessageView(delivery.event, template=delivery.view.template))
        ).remote_id

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        self._print(f"[alert {delivery.id}]\n" + render_view_text(view))
        return Posted(str(delivery.id), "console")

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        self._print(f"✎ alert {posted.remote_id} now reads:\n" + render_view_text(view))

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        self._print(f"↳ reply to alert {posted.remote_id}:\n" + render_view_text(view))
        return None

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(text + "\n\n")
        stream.flush()


class JsonlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fsync: bool = True


class JsonlSink(BaseSink):
    """Append each alert as one JSON object per line to a file.

    ``[destinations.archive] sink = "jsonl"`` with ``target = "data/alerts.jsonl"``
    (relative paths are under the data directory). Each line carries the delivery's
    idempotency key; a delivery whose key is already in the file is not written
    again, so a retry after a crash never duplicates a line. Option ``fsync``
    (default true) flushes each line to disk before the delivery counts as sent.
    """

    kind: ClassVar[str] = "jsonl"
    Options: ClassVar[type[BaseModel]] = JsonlOptions

    def __init__(self, *, context: SinkContext) -> None:
        self._data_dir = Path(context.data_dir)
        self._seen: dict[Path, set[str]] = {}
        self._offsets: dict[Path, int] = {}
        self._lock = asyncio.Lock()

    def _path(self, destination: Destination) -> Path:
        path = Path(destination.target)
        return path if path.is_absolute() else self._data_dir / path

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """A file path as ``target`` and known options."""
        where = f"destinations.{destination.id}.target"
        if not destination.target.strip():
            raise ConfigError(f"{where}: required: the file to append to")
        if not destination.target.isprintable():
            raise ConfigError(f"{where}: a file path cannot hold control characters")
        path = Path(destination.target)
        if destination.target.endswith("/") or (path.is_absolute() and path.is_dir()):
            raise ConfigError(f"{where}: names a directory; name the file to append to")
        destination_options(cls.Options, destination)

    def _keys(self, path: Path, fd: int) -> tuple[set[str], int]:
        """Keys in the file, reading only what was appended since the last look (other
        processes sharing the file append too), and the file's size. Afterwards
        ``_offsets[path]`` is just past its last whole line: short of the size, the
        file ends in a torn line."""
        keys = self._seen.setdefault(path, set())
        offset = self._offsets.get(path, 0)
        size = os.fstat(fd).st_size
        if size > offset:
            chunk = os.pread(fd, size - offset, offset)
            complete = chunk.rfind(b"\n") + 1
            for line in chunk[:complete].splitlines():
                try:
                    keys.add(json.loads(line)["key"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a crash
            self._offsets[path] = offset + complete
        return keys, size

    async def send(self, delivery: Delivery) -> str | None:
        path = self._path(delivery.destination)
        fsync = bool(delivery.destination.options.get("fsync", True))
        async with self._lock:
            try:
                return await asyncio.to_thread(self._append, path, delivery, fsync)
            except OSError as exc:
                raise RetryableSendError(f"cannot write {path}: {exc}") from exc

    def _append(self, path: Path, delivery: Delivery, fsync: bool) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # replicas may share the file
            keys, size = self._keys(path, fd)
            if delivery.idempotency_key in keys:
                return delivery.idempotency_key
            record = {
                "key": delivery.idempotency_key,
                "delivery_id": delivery.id,
                "destination": delivery.destination.id,
                "event": delivery.event.to_json(),
            }
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
            torn = self._offsets.get(path, 0) != size
            if torn:  # a writer died mid-line: end its line first
                line = b"\n" + line
            os.write(fd, line)
            if fsync:
                os.fsync(fd)
            if not torn:  # read up to here: no need to read this line back
                self._offsets[path] = size + len(line)
                keys.add(delivery.idempotency_key)
        finally:
            os.close(fd)
        return delivery.idempotency_key
