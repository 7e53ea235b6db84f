"""compose.yaml, the Dockerfile and the env example stay consistent (Docker itself
does not run in CI: this parses the files and checks what they refer to)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.config import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _named_volumes(service: dict[str, Any]) -> set[str]:
    names = set()
    for spec in service.get("volumes", []):
        source = spec.split(":", 1)[0] if isinstance(spec, str) else spec.get("source", "")
        if source and not source.startswith((".", "/", "~")):
            names.add(source)
    return names


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert {"alerts", "postgres", "synapse"} <= set(services)
    assert "profiles" not in services["alerts"] and "profiles" not in services["postgres"]
    assert services["synapse"]["profiles"] == ["dev"]
    assert services["alerts"]["build"] in (".", {"context": "."})
    assert services["postgres"]["image"].startswith("postgres:")


def test_every_named_volume_is_declared_and_every_declared_one_is_used(
    compose: dict[str, Any],
) -> None:
    used = set().union(*(_named_volumes(s) for s in _services(compose).values()))
    declared = set(compose.get("volumes") or {})
    assert used == declared
    assert any(
        v.endswith(":/var/lib/postgresql/data") for v in _services(compose)["postgres"]["volumes"]
    )


def test_healthchecks_and_dependencies(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{dep} needs a healthcheck"
    assert services["alerts"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_the_service_healthcheck_uses_its_own_health_endpoint(compose: dict[str, Any]) -> None:
    alerts = _services(compose)["alerts"]
    env = alerts["environment"]
    port = env["ALERTS_HTTP_BIND"].rsplit(":", 1)[1]
    probe = " ".join(alerts["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe
    assert port in alerts.get("expose", []) or any(port in str(p) for p in alerts.get("ports", []))
    assert env["ALERTS_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["ALERTS_DATABASE_URL"]


def test_secrets_come_from_an_uncommitted_env_file(compose: dict[str, Any]) -> None:
    alerts = _services(compose)["alerts"]
    assert alerts["env_file"] == [".env"]
    password = _services(compose)["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD")  # interpolated, never literal
    url = alerts["environment"]["ALERTS_DATABASE_URL"]
    assert re.match(r"postgresql://alerts:\$\{POSTGRES_PASSWORD[^}]*\}@", url)
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert ".env" in (REPO / ".dockerignore").read_text().split()
    assert (REPO / ".env.example").exists()


def test_env_example_names_real_settings() -> None:
    known = {f"ALERTS_{name.upper()}" for name in Settings.model_fields}
    names = [
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert "POSTGRES_PASSWORD" in names
    for name in names:
        if name.startswith("ALERTS_") and not name.startswith(
            ("ALERTS_DISCORD_", "ALERTS_MATRIX_")
        ):
            assert name in known or name == "ALERTS_REPLICAS", name


def _dockerfile() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_entrypoint_is_alerts() -> None:
    entrypoints = [rest for word, rest in _dockerfile() if word == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["alerts"]
    [cmd] = [rest for word, rest in _dockerfile() if word == "CMD"]
    assert json.loads(cmd) == ["run"]


def test_dockerfile_copies_only_what_exists() -> None:
    for word, rest in _dockerfile():
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (REPO / source).exists(), source
