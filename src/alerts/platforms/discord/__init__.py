"""Discord: alerts as embeds (bot or webhooks) and ``/alerts`` slash commands.

::

    session.py   DiscordSession (the bot's client, global rate limiter),
                 WebhookSession, the error table, DiscordSettings
    sink.py      DiscordSender (the bot) and DiscordWebhookSink: render and send
    chat.py      DiscordCommands: /alerts on the bot's client
    render.py    facts → embed (formatting only)

``sink`` and ``chat`` stand on ``session`` and never on each other; ``DiscordSink``
below, the registered bot sink, runs both on one session.
"""

from __future__ import annotations

from alerts.chat.commands import CommandService
from alerts.platforms.discord.chat import DiscordCommands
from alerts.platforms.discord.session import DiscordSession, DiscordSettings, GlobalLimiter
from alerts.platforms.discord.sink import (
    DiscordOptions,
    DiscordSender,
    DiscordWebhookSink,
    WebhookOptions,
    channel_problem,
)

__all__ = [
    "DiscordCommands",
    "DiscordOptions",
    "DiscordSender",
    "DiscordSession",
    "DiscordSettings",
    "DiscordSink",
    "DiscordWebhookSink",
    "GlobalLimiter",
    "WebhookOptions",
    "channel_problem",
]


class DiscordSink(DiscordSender):
    """Discord bot: post alerts as embeds and answer ``/alerts`` slash commands.

    Destination: ``sink = "discord"``, ``target = "<channel id>"`` (a thread id
    works the same). For a forum channel add ``post = "forum_post"`` to the
    destination: every alert opens a post titled with the alert title.

    Environment: ``ALERTS_DISCORD_TOKEN`` (the bot token, required),
    ``ALERTS_DISCORD_GUILDS`` (comma-separated guild ids to sync the slash commands
    to on start), ``ALERTS_DISCORD_GLOBAL_COMMANDS=true`` (sync globally instead),
    ``ALERTS_DISCORD_MAX_RATELIMIT_TIMEOUT_S`` (default 30: a longer rate-limit wait
    is handed back to the dispatcher, which retries that channel later),
    ``ALERTS_DISCORD_GLOBAL_RATE_PER_S`` (default 50, Discord's global limit).

    Each message carries a ``nonce`` derived from the delivery id with
    ``enforce_nonce``, so a retry within Discord's window returns the first message
    instead of posting a second one. Source text is escaped so that no markdown,
    link or mention from a source survives, and ``allowed_mentions`` parses nothing:
    no text from a source can ping anyone (``docs/discord.md``). An update edits the
    earlier alert (``PATCH``) and may reply to it (a ``message_reference``; replies
    need Read Message History).
    """

    _commands: DiscordCommands | None = None

    async def listen(self, commands: CommandService) -> None:
        """Connect to the gateway and answer ``/alerts`` until cancelled."""
        if self._commands is None:  # one command tree per client, kept across restarts
            self._commands = DiscordCommands(
                self.session.client,
                commands,
                guilds=self.settings.guilds,
                global_commands=self.settings.global_commands,
            )
        self._commands.service = commands
        await self._commands.run()
