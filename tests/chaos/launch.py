"""``alerts run`` with discord.py pointed at the local fake Discord.

The chaos test runs the real service in subprocesses; the fake (``tests/discord``)
listens on loopback, so the child process points discord.py's REST base
(``discord.http.Route.BASE``, also used by webhooks) and gateway URL at it — the same
two settings the in-process Discord tests patch — then runs the CLI unchanged.
"""

from __future__ import annotations

import os
import sys
import warnings

import yarl

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord.gateway
    import discord.http

from alerts.cli import main

BASE_VARIABLE = "CHAOS_DISCORD_BASE"

if __name__ == "__main__":
    base = os.environ[BASE_VARIABLE]
    discord.http.Route.BASE = base + "/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(
        base.replace("http", "ws", 1) + "/gateway"
    )
    sys.exit(main(sys.argv[1:]))
