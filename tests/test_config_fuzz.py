"""A generator of broken configurations: the shipped config files, mutated line by
line (values swapped for odd ones, lines dropped, doubled, cut, renamed). Every
mutant is either a valid config or refused with a ``ConfigError`` whose every line
names the file (or the environment variable) and a key path; nothing else escapes.
A mutant that loads also opens the real runtime (store, sinks, destinations).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from alerts.config import Config, load_config
from alerts.errors import ConfigError
from alerts.runtime import Runtime
from alerts.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CASES = 300

ODD_VALUES = (
    '""',
    "0",
    "-1",
    "-60",
    "1e400",
    "nan",
    "-inf",
    "true",
    "[]",
    "{}",
    "[1, 2]",
    '[""]',
    "[[]]",
    "{ a = 1 }",
    '"x"',
    '"99999999999d"',
    '"0s"',
    '"1h30m"',
    "1979-05-27",
    "07:32:00",
    '"file:///etc/passwd"',
    '"//example.org/feed"',
    '"https://"',
    '"\\u202e"',
    '"a\\nb"',
    "9223372036854775807",
    "-9223372036854775808",
    "0.5",
    "3.0",
    '"console"',
    '"news"',
    '["news", "nope"]',
)
ODD_LINES = (
    "unknown_key = 1",
    "[x]",
    "[[sources]]",
    '[topics."A B"]',
    "[destinations.y]",
    "[[routes]]",
    "[service]",
    "[http]",
    "= 1",
    '"" = 1',
    "a.b.c = 1",
    "sources = 5",
)


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    if not lines:
        return rng.choice(ODD_LINES)
    at = rng.randrange(len(lines))
    line = lines[at]
    operation = rng.randrange(7)
    if operation == 0 and "=" in line and not line.lstrip().startswith("#"):
        key = line.split("=", 1)[0]
        lines[at] = f"{key}= {rng.choice(ODD_VALUES)}"
    elif operation == 1:
        del lines[at]
    elif operation == 2:
        lines.insert(at, line)
    elif operation == 3:
        lines.insert(at, rng.choice(ODD_LINES))
    elif operation == 4 and "=" in line:
        key, value = line.split("=", 1)
        lines[at] = f"{key.strip()}x ={value}"
    elif operation == 5:
        return text[: rng.randrange(len(text) + 1)]
    else:
        lines[at] = line.replace('"', "", 1)
    return "\n".join(lines) + "\n"


def mutant(root: Path, seed: int) -> tuple[Path, list[str]]:
    config = root / "config"
    shutil.copytree(REPO / "config", config)
    files = sorted(config.rglob("*.toml"))
    rng = random.Random(seed)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(files)
        path.write_text(mutate(path.read_text(encoding="utf-8"), rng), encoding="utf-8")
    return config, [str(p) for p in files]


def assert_names_file_and_path(exc: ConfigError, files: list[str]) -> None:
    for problem in exc.problems:
        where, _, rest = problem.partition(": ")
        assert where in files or where.startswith("ALERTS_"), problem
        assert rest and not rest.startswith(": "), problem


@pytest.mark.parametrize("seed", range(CASES))
async def test_mutated_config_loads_or_is_refused_with_reasons(tmp_path: Path, seed: int) -> None:
    config_dir, files = mutant(tmp_path, seed)
    try:
        config = load_config(config_dir)
    except ConfigError as exc:
        assert_names_file_and_path(exc, files)
        return
    await opens(config, tmp_path)


async def opens(config: Config, root: Path) -> None:
    settings = Settings(
        config_dir=root / "config",
        database_url=f"sqlite:///{root / 'alerts.db'}",
        data_dir=root / "data",
        http_bind="",
    )
    runtime = await Runtime.open(settings, config)
    await runtime.close()
