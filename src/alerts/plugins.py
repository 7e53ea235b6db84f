"""One way to build a registry: the built-in classes plus an entry-point group.

A kind registered twice is an error, never a silent override; so is a plugin that
cannot be loaded or does not declare every member of its contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import EntryPoint, entry_points

__all__ = ["declares", "entry_points", "load", "registry", "shortfall"]
from typing import Protocol, TypeGuard, TypeVar

from alerts.errors import ConfigError


class Kinded(Protocol):
    @property
    def kind(self) -> str: ...


F = TypeVar("F", bound=Kinded)


def registry(
    group: str,
    builtin: Iterable[F],
    is_factory: Callable[[object], TypeGuard[F]],
    contract: Sequence[str],
    what: str,
) -> dict[str, F]:
    """``kind → class`` of ``builtin`` and of the ``group`` entry points; a plugin
    must pass ``is_factory`` (``declares(obj, contract)``)."""
    found: dict[str, F] = {}
    for factory in builtin:
        _add(found, factory, f"built-in {what} {factory.__module__}")
    for ep in entry_points(group=group):
        plugin = load(ep, what)
        if not is_factory(plugin):
            raise ConfigError(f"{what} plugin {ep.value}: {shortfall(plugin, contract, what)}")
        _add(found, plugin, f"{what} plugin {ep.value}")
    return found


def declares(obj: object, contract: Sequence[str]) -> bool:
    """``obj`` is a class with every member of ``contract`` and a string ``kind``."""
    return (
        isinstance(obj, type)
        and all(hasattr(obj, name) for name in contract)
        and isinstance(getattr(obj, "kind", None), str)
    )


def load(ep: EntryPoint, what: str) -> object:
    try:
        loaded: object = ep.load()
    except Exception as exc:
        raise ConfigError(f"{what} plugin {ep.value}: cannot be loaded: {exc!r}") from None
    return loaded


def shortfall(obj: object, contract: Sequence[str], what: str) -> str:
    missing = [name for name in contract if not hasattr(obj, name)]
    if not isinstance(obj, type):
        return f"not a {what} class"
    if missing:
        return f"does not declare {', '.join(missing)}"
    return "its kind is not a string"


def _add(found: dict[str, F], factory: F, origin: str) -> None:
    if factory.kind in found:
        raise ConfigError(f"{origin}: kind {factory.kind!r} is already registered")
    found[factory.kind] = factory
