"""A real Synapse homeserver on loopback, for tests and the bench.

Synapse lives in its own venv (``.venv-synapse``, made by ``scripts/setup-synapse``).
``SynapseServer`` writes a loopback config (SQLite, shared-secret registration, no
federation, relaxed ``rc_*`` limits), generates keys, starts the process on a free
127.0.0.1 port, waits for ``/_matrix/client/versions`` and stops it by PID.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SERVER_NAME = "localhost"
_RELAXED = {"per_second": 10_000, "burst_count": 10_000}


def synapse_python() -> Path | None:
    """The Python of the Synapse venv, or None when it is not installed."""
    venv = Path(os.environ.get("SYNAPSE_VENV", REPO / ".venv-synapse"))
    python = venv / "bin" / "python"
    return python if python.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Account:
    user_id: str
    password: str
    access_token: str
    device_id: str


class SynapseServer:
    """One Synapse process; ``start``/``stop``/``restart`` keep its data directory."""

    def __init__(self, directory: Path, *, python: Path) -> None:
        self.directory = directory
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared_secret = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self._admin: Account | None = None
        self._write_config()

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    def _write_config(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(d / "log.yaml"),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "rc_message": _RELAXED,
            "rc_registration": _RELAXED,
            "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
            "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
            "rc_joins_per_room": _RELAXED,
            "rc_invites": {"per_room": _RELAXED, "per_user": _RELAXED, "per_issuer": _RELAXED},
            "rc_room_creation": _RELAXED,
            "rc_key_requests": _RELAXED,
            "rc_admin_redaction": _RELAXED,
            "rc_presence": {"per_user": _RELAXED},
            "rc_delayed_event_mgmt": _RELAXED,
        }
        log_config = {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(d / "homeserver.log"),
                    "formatter": "plain",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }
        self.config_path.write_text(yaml.safe_dump(config))
        (d / "log.yaml").write_text(yaml.safe_dump(log_config))
        subprocess.run(
            [str(self.python), "-m", "synapse.app.homeserver", "--config-path",
             str(self.config_path), "--generate-keys"],
            check=True, capture_output=True, cwd=d,
        )  # fmt: skip

    def start(self, *, timeout_s: float = 60.0) -> None:
        log = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "--config-path",
             str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Synapse exited: see {self.directory / 'stdout.log'}")
            try:
                self.request("GET", "/_matrix/client/versions")
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {timeout_s} s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- HTTP ------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def register(self, localpart: str, *, admin: bool = False) -> Account:
        """A new user through the shared-secret admin API (with its own device)."""
        password = secrets.token_hex(12)
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))  # fmt: skip
        resp = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {"nonce": nonce, "username": localpart, "password": password, "admin": admin,
             "mac": mac.hexdigest()},
        )  # fmt: skip
        return Account(resp["user_id"], password, resp["access_token"], resp["device_id"])

    def admin(self) -> Account:
        if self._admin is None:
            self._admin = self.register(f"admin{secrets.token_hex(3)}", admin=True)
        return self._admin

    def override_ratelimit(self, user_id: str, *, per_second: int, burst_count: int) -> None:
        """Throttle (or, with zeros, unthrottle) one user's messages at runtime."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        self.request(
            "POST",
            path,
            {"messages_per_second": per_second, "burst_count": burst_count},
            token=self.admin().access_token,
        )

    def clear_ratelimit(self, user_id: str) -> None:
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        self.request("DELETE", path, token=self.admin().access_token)
