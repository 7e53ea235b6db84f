"""Discord targets in ``alerts check``: channel ids only, webhook URLs never echoed;
and commands that use no platform import none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alerts.errors import ConfigError
from alerts.model import Destination
from alerts.platforms.discord import DiscordSink, DiscordWebhookSink

TOKEN = "wh-secret-" + "t" * 48
WEBHOOK = f"https://discord.com/api/webhooks/123456789012345678/{TOKEN}"


@pytest.mark.parametrize(
    ("factory", "target", "reason"),
    [
        pytest.param(DiscordSink, "#general", "is not a Discord channel id", id="channel-name"),
        pytest.param(DiscordSink, "general", "is not a Discord channel id", id="bare-name"),
        pytest.param(DiscordSink, WEBHOOK, "a webhook URL is not a channel id", id="webhook-url"),
        pytest.param(DiscordSink, "0123", "is not a Discord channel id", id="leading-zero"),
        pytest.param(DiscordWebhookSink, WEBHOOK, "a webhook URL holds a secret", id="hook-url"),
        pytest.param(DiscordWebhookSink, "", "a webhook name is required", id="hook-empty"),
    ],
)
def test_bad_targets_are_refused_without_echoing_secrets(
    factory: type[DiscordSink], target: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        factory.check_destination(Destination("d", factory.kind, target))
    message = str(refused.value)
    assert message.startswith("destinations.d.target: ")
    assert reason in message
    assert TOKEN not in message


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "--config", str(config), "check"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": ""},
    )  # fmt: skip


def write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "alerts.toml").write_text(text, encoding="utf-8")
    return config


def test_alerts_check_refuses_a_webhook_url_as_bot_target_without_the_token(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, f'[destinations.news]\nsink = "discord"\ntarget = "{WEBHOOK}"\n')
    result = run(config, "-m", "alerts")
    assert result.returncode == 2
    assert "destinations.news.target: a webhook URL is not a channel id" in result.stderr
    assert TOKEN not in result.stderr + result.stdout


def test_commands_that_need_no_platform_import_none(tmp_path: Path) -> None:
    config = write(tmp_path, '[destinations.console]\nsink = "console"\n')
    probe = (
        "import sys; from alerts.cli import main; code = main(); "
        "print(code, 'discord' in sys.modules, 'nio' in sys.modules)"
    )
    result = run(config, "-c", probe)
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stderr
