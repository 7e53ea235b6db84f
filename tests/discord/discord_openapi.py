"""Check HTTP traffic against Discord's official OpenAPI spec.

The spec lives outside the repository, in ``../shared/specs/discord-openapi.json``
next to the main checkout (``locate_spec`` follows a git worktree back to it). It
is loaded once per test session. The fake Discord validates every request the
project sends and every response it gives, so neither side can drift from Discord.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

SPEC_RELATIVE = Path("..") / "shared" / "specs" / "discord-openapi.json"
SPEC_URI = "urn:discord-openapi"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _main_checkout(root: Path) -> Path:
    """The main checkout of ``root``: itself, or the one a git worktree points to."""
    dotgit = root / ".git"
    if dotgit.is_file():
        gitdir = Path(dotgit.read_text().split(":", 1)[1].strip())
        commondir = gitdir / "commondir"
        common = (gitdir / commondir.read_text().strip()) if commondir.exists() else gitdir
        return common.resolve().parent
    return root


def locate_spec(root: Path = REPO_ROOT) -> Path | None:
    for base in (root, _main_checkout(root)):
        candidate = (base / SPEC_RELATIVE).resolve()
        if candidate.is_file():
            return candidate
    return None


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    params: tuple[tuple[Mapping[str, Any], str], ...]
    op: Mapping[str, Any]


class OpenApi:
    """Request and response validation against the spec."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        resource = referencing.Resource.from_contents(
            spec, default_specification=referencing.jsonschema.DRAFT202012
        )
        self.registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            SPEC_URI, resource
        )
        self.operations = sorted(self._operations(), key=lambda o: o.template.count("{"))
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}

    def _operations(self) -> list[Operation]:
        found = []
        for template, item in self.spec["paths"].items():
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            for method, op in item.items():
                if method == "parameters":
                    continue
                shared = [
                    (p, "/" + _pointer("paths", template, "parameters", str(i), "schema"))
                    for i, p in enumerate(item.get("parameters", ()))
                ]
                own = [
                    (p, "/" + _pointer("paths", template, method, "parameters", str(i), "schema"))
                    for i, p in enumerate(op.get("parameters", ()))
                ]
                params = (*shared, *own)
                found.append(
                    Operation(method.upper(), template, re.compile(f"^{regex}$"), params, op)
                )
        return found

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for operation in self.operations:
            if operation.method != method:
                continue
            match = operation.pattern.match(path)
            if match:
                return operation, match.groupdict()
        return None

    def _errors(self, pointer: str, instance: Any) -> list[str]:
        validator = self._validators.get(pointer)
        if validator is None:
            schema = {"$ref": f"{SPEC_URI}#{pointer}"}
            validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
            self._validators[pointer] = validator
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    def _resolve(self, node: Mapping[str, Any], pointer: str) -> tuple[Mapping[str, Any], str]:
        while "$ref" in node:
            ref = node["$ref"].removeprefix("#")
            pointer = ref
            node = self.spec
            for part in ref.strip("/").split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def check_request(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        *,
        content_type: str | None,
    ) -> list[str]:
        """Problems with one request (empty when it is valid)."""
        found = self.find(method, path)
        if found is None:
            return [f"{method} {path}: no such operation in the spec"]
        operation, path_params = found
        where = f"{method} {operation.template}"
        base = ("paths", operation.template)
        problems = []
        for param, pointer in operation.params:
            name, location = param["name"], param["in"]
            raw = path_params.get(name) if location == "path" else query.get(name)
            if raw is None:
                if param.get("required"):
                    problems.append(f"{where}: missing {location} parameter {name}")
                continue
            value = _coerce(raw, param.get("schema", {}), self)
            problems += [f"{where} {location} {name}: {e}" for e in self._errors(pointer, value)]
        for name in query:
            if not any(p["name"] == name and p["in"] == "query" for p, _ in operation.params):
                problems.append(f"{where}: unknown query parameter {name}")
        request_body = operation.op.get("requestBody")
        if request_body is not None and body is not None:
            if content_type != "application/json":
                problems.append(f"{where}: content type {content_type!r}")
            else:
                pointer = "/" + _pointer(
                    *base, method.lower(), "requestBody", "content", "application/json", "schema"
                )
                problems += [f"{where} body {e}" for e in self._errors(pointer, body)]
        elif body is not None:
            problems.append(f"{where}: a body where the spec takes none")
        return problems

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Problems with one response of the fake (empty when it is valid)."""
        found = self.find(method, path)
        if found is None:
            return [f"{method} {path}: no such operation in the spec"]
        operation, _ = found
        if status >= 500:
            return []  # outages come from Discord's edge; the spec describes none
        responses = operation.op["responses"]
        key = next(
            (k for k in (str(status), f"{status // 100}XX", "default") if k in responses), None
        )
        where = f"{method} {operation.template} -> {status}"
        if key is None:
            return [f"{where}: status not in the spec"]
        pointer = "/" + _pointer("paths", operation.template, method.lower(), "responses", key)
        node, pointer = self._resolve(responses[key], pointer)
        content = node.get("content", {})
        if "application/json" not in content:
            return [] if body is None else [f"{where}: a body where the spec has none"]
        pointer += "/" + _pointer("content", "application/json", "schema")
        return [f"{where} body {e}" for e in self._errors(pointer, body)]


def _coerce(raw: str, schema: Mapping[str, Any], api: OpenApi) -> Any:
    schema, _ = api._resolve(schema, "")
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "boolean" in kinds and raw.lower() in ("true", "false", "1", "0"):
        return raw.lower() in ("true", "1")
    if "integer" in kinds and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return raw


@cache
def load(path: Path) -> OpenApi:
    """The spec, parsed and indexed once per process."""
    return OpenApi(json.loads(path.read_text(encoding="utf-8")))
