"""Deployment settings from the environment, and how a bad one is reported.

``Settings`` holds the service's own ``ALERTS_*`` variables; each sink declares
its own settings class (``Sink.Settings``, e.g. ``ALERTS_DISCORD_*``).
``read_settings`` reads any of them and turns every problem into a
``ConfigError`` line ``NAME: reason`` — the variable's name, never its value,
since values here are secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from alerts.errors import ConfigError, key_path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
DATABASE_FORMS = "sqlite:///PATH or postgresql://HOST/DATABASE"

S = TypeVar("S", bound=BaseSettings)


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

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            raise ValueError(f"expected {DATABASE_FORMS}")
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}: use {DATABASE_FORMS}")
        if scheme == "sqlite" and not rest.removeprefix("//").removeprefix("/"):
            raise ValueError(
                "names no database file: use sqlite:///PATH (relative) or sqlite:////PATH"
            )
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError("exists and is not a directory")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("http_bind")
    @classmethod
    def _http_bind(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected host:port (port 0-65535), [::1]:port, or empty for off")
        if any(ch.isspace() for ch in host):
            raise ValueError("the host must not contain spaces")
        return value

    @field_validator("instance_name")
    @classmethod
    def _instance_name(cls, value: str) -> str:
        if len(value) > 100 or not value.isprintable():
            raise ValueError("must be at most 100 printable characters")
        return value


def read_settings(
    cls: type[S], overrides: Mapping[str, Any] | None = None, *, labels: Mapping[str, str] = {}
) -> S:
    """An instance of ``cls`` from the environment (and ``overrides``, e.g. command
    line options); every problem becomes a ``ConfigError`` line ``NAME: reason``.

    ``labels`` names where an override came from (``{"database_url": "--database-url"}``);
    the rest are named by their environment variable.
    """
    overrides = dict(overrides or {})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            field, *rest = err["loc"] or ("",)
            name = labels.get(str(field)) if field in overrides else None
            where = (name or env_name(cls, str(field))) + key_path(tuple(rest), nested=True)
            problems.append(f"{where}: {_reason(err)}")
        raise ConfigError(problems) from None
    except SettingsError as exc:
        raise ConfigError(_settings_error(cls, exc)) from None


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets ``field`` of ``cls``."""
    info = cls.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, str):
        return alias.upper()
    prefix = str(cls.model_config.get("env_prefix") or "")
    return f"{prefix}{field}".upper()


def _reason(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def _settings_error(cls: type[BaseSettings], exc: SettingsError) -> str:
    """pydantic-settings says which field it could not decode (JSON, for lists and
    dicts) only in its message."""
    found = re.search(r'field "([^"]+)"', str(exc))
    if found is None:
        return f"environment: {exc}"
    cause = exc.__cause__ or exc.__context__
    why = f" ({cause})" if isinstance(cause, ValueError) else ""
    return f"{env_name(cls, found[1])}: not valid JSON{why}"
