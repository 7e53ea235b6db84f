"""``/alerts`` slash commands: Discord's front end to the one command grammar.

It stands on the bot's ``DiscordSession`` (its logged-in client) and never on the
sink.

Discord users fill the fields of ``/alerts subscribe topic:… kinds:… keywords:…``;
this module only translates an interaction into an ``alerts.chat.commands.Command``
and a ``CommandContext`` (the channel is the room: ``discord:<channel id>``, with
the guild id in the destination options), runs ``CommandService.execute`` and
answers with an ephemeral reply. The grammar and every rule live in
``alerts.chat.commands``.

Access: the command is registered with ``default_member_permissions`` = Manage
Channels (server admins may widen or narrow it under Server Settings →
Integrations) and the member's resolved permissions in the channel are checked
again at run time: only a member who can manage the channel may subscribe or
unsubscribe it (or add and remove feeds).

Direct messages: the command is also allowed in the bot's DMs (interaction
context ``BOT_DM``; Discord sends ``user`` instead of ``member`` there). A DM is the
user's own room: no rights are needed, and alerts go to the DM channel, which the
bot opens (or finds) with ``POST /users/@me/channels`` (Create DM). The
destination remembers the user (``dm_user``). DMs see only global commands: set
``ALERTS_DISCORD_GLOBAL_COMMANDS=true`` (or list no guilds) for them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Sequence

from alerts.chat.commands import (
    Command,
    CommandContext,
    CommandError,
    CommandService,
    Reply,
    build_add_feed,
    build_subscribe,
)
from alerts.platforms.discord.session import AlertsClient
from alerts.render.facts import cut

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.http import Route

log = logging.getLogger(__name__)

SINK = "discord"
REPLY_MAX = 2000
CHOICES_MAX = 25


# The ``updates=`` choices that /alerts subscribe and /alerts add-feed both offer.
UPDATE_CHOICES = [
    app_commands.Choice(name="edit the first alert in place", value="edit"),
    app_commands.Choice(name="edit it and reply with what changed", value="reply"),
    app_commands.Choice(name="post a new alert", value="new"),
]


class AlertsGroup(app_commands.Group):
    """The ``/alerts`` command group; every subcommand replies ephemerally."""

    def __init__(self, front: DiscordCommands) -> None:
        super().__init__(
            name="alerts",
            description="Alerts on campaign news, petitions and contracts for this channel",
            default_permissions=discord.Permissions(manage_channels=True),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=True, private_channel=False
            ),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
        )
        self.front = front

    @app_commands.command(name="help", description="What the alerts commands do")
    async def help_(self, interaction: discord.Interaction) -> None:
        await self.front.run_command(interaction, Command("help"))

    @app_commands.command(name="topics", description="The topics this channel can follow")
    async def topics(self, interaction: discord.Interaction) -> None:
        await self.front.run_command(interaction, Command("topics"))

    @app_commands.command(name="list", description="This channel's subscriptions")
    async def list_(self, interaction: discord.Interaction) -> None:
        await self.front.run_command(interaction, Command("list"))

    @app_commands.command(name="subscribe", description="Send this channel alerts on a topic")
    @app_commands.describe(
        topic="The topic to follow",
        kinds="Only these kinds, comma-separated: new, updated, milestone, delta, summary",
        keywords="Only alerts mentioning one of these words, comma-separated",
        exclude="Never alerts mentioning these words, comma-separated",
        min_amount="Skip awards below this amount (e.g. 1M)",
        min_change="Skip modifications that change less than this (e.g. 1M)",
        updates="What an update does to the first alert: edit it, edit and reply, or a new alert",
        digest="Hold alerts for one digest message: hourly, daily@09:00, or off",
        quiet="Quiet hours: hold alerts between these times, e.g. 22:00-07:00 (or off)",
        tz="Time zone of digest and quiet hours, e.g. Europe/Paris (default UTC)",
        urgent="Kinds never held, comma-separated: e.g. milestone",
        template="Word alerts with one of the operator's templates, by name",
        notify_failures="Also say here when a source of this topic fails and recovers",
    )
    @app_commands.choices(updates=UPDATE_CHOICES)
    async def subscribe(
        self,
        interaction: discord.Interaction,
        topic: str,
        kinds: str | None = None,
        keywords: str | None = None,
        exclude: str | None = None,
        min_amount: str | None = None,
        min_change: str | None = None,
        updates: str | None = None,
        digest: str | None = None,
        quiet: str | None = None,
        tz: str | None = None,
        urgent: str | None = None,
        template: str | None = None,
        notify_failures: bool | None = None,
    ) -> None:
        try:
            command = build_subscribe(
                topic,
                kinds=kinds or "",
                keywords=keywords or "",
                exclude=exclude or "",
                min_amount=min_amount or "",
                min_change=min_change or "",
                updates=updates or "",
                digest=digest or "",
                quiet=quiet or "",
                tz=tz or "",
                urgent=urgent or "",
                template=template or "",
                notify_failures="yes" if notify_failures else "",
            )
        except CommandError as exc:
            await self.front.reply(interaction, Reply(str(exc), ok=False))
            return
        await self.front.run_command(interaction, command)

    @app_commands.command(name="unsubscribe", description="Stop alerts on a topic (or all)")
    @app_commands.describe(topic="The topic to stop, or: all")
    async def unsubscribe(self, interaction: discord.Interaction, topic: str) -> None:
        await self.front.run_command(interaction, Command("unsubscribe", topic=topic))

    @app_commands.command(name="add-feed", description="Add a feed of this channel's own")
    @app_commands.describe(
        url="The feed's address (https://…)",
        topic="A topic to label it with",
        updates="What an update does to the first alert: edit it, edit and reply, or a new alert",
    )
    @app_commands.choices(updates=UPDATE_CHOICES)
    async def add_feed(
        self,
        interaction: discord.Interaction,
        url: str,
        topic: str | None = None,
        updates: str | None = None,
    ) -> None:
        try:
            command = build_add_feed(url, topic or "", updates=updates or "")
        except CommandError as exc:
            await self.front.reply(interaction, Reply(str(exc), ok=False))
            return
        await self.front.run_command(interaction, command, slow=True)

    @app_commands.command(name="remove-feed", description="Remove a feed this channel added")
    @app_commands.describe(feed="The feed's id (see /alerts feeds) or address")
    async def remove_feed(self, interaction: discord.Interaction, feed: str) -> None:
        await self.front.run_command(interaction, Command("remove-feed", feed=feed))

    @app_commands.command(name="feeds", description="The feeds this channel added")
    async def feeds(self, interaction: discord.Interaction) -> None:
        await self.front.run_command(interaction, Command("feeds"))

    @add_feed.autocomplete("topic")
    async def _add_feed_topics(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return self.front.topic_choices(current)

    @subscribe.autocomplete("topic")
    async def _subscribe_topics(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return self.front.topic_choices(current)

    @subscribe.autocomplete("template")
    async def _subscribe_templates(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return self.front.template_choices(current)

    @unsubscribe.autocomplete("topic")
    async def _unsubscribe_topics(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        choices = self.front.topic_choices(current)
        if "all".startswith(current.lower()):
            choices = [app_commands.Choice(name="all", value="all"), *choices]
        return choices[:CHOICES_MAX]


class DiscordCommands:
    """Registers ``/alerts`` on a logged-in client, syncs it, and runs the gateway.

    ``guilds``: sync the commands to these guilds on start (instant); with
    ``global_commands`` they are synced globally instead (Discord may take up to an
    hour to show them everywhere). The bot leaving a guild drops that guild's
    subscriptions.
    """

    def __init__(
        self,
        client: AlertsClient,
        service: CommandService,
        *,
        guilds: Sequence[int] = (),
        global_commands: bool = False,
    ) -> None:
        self.client = client
        self.service = service
        self.guilds = list(guilds)
        self.global_commands = global_commands
        self.tree: app_commands.CommandTree[AlertsClient] = app_commands.CommandTree(client)
        self.tree.add_command(AlertsGroup(self))

    async def sync(self) -> None:
        if self.global_commands or not self.guilds:
            synced = await self.tree.sync()
            log.info("synced %d global slash command(s)", len(synced))
        if self.global_commands:
            return
        for guild_id in self.guilds:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
            log.info("synced slash commands to guild %s", guild_id)

    async def run(self) -> None:
        """Sync, then stay connected to the gateway until cancelled."""
        await self.sync()
        self.client.guild_left.append(self.forget_guild)
        try:
            await self.client.connect(reconnect=True)
        finally:
            self.client.guild_left.remove(self.forget_guild)
            if self.client.ws is not None:  # leadership lost: leave the gateway too
                with contextlib.suppress(Exception):
                    await self.client.ws.close(code=1000)

    def topic_choices(self, current: str) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=cut(name, 100), value=name)
            for name in self.service.topic_names(current.strip())[:CHOICES_MAX]
        ]

    def template_choices(self, current: str) -> list[app_commands.Choice[str]]:
        names = sorted(t for t in self.service.templates if t.startswith(current.strip()))
        return [app_commands.Choice(name=cut(n, 100), value=n) for n in names[:CHOICES_MAX]]

    async def context(self, interaction: discord.Interaction) -> CommandContext:
        """The room and rights of an interaction, as the command core sees them: a
        guild channel and the member's rights there, or the user's DM with the bot."""
        user = interaction.user
        if interaction.guild_id is None:
            return CommandContext(
                sink=SINK,
                target=str(await self.dm_channel(user.id)),
                user=user.name,
                may_manage=True,
                destination_options={"dm_user": str(user.id)},
            )
        return CommandContext(
            sink=SINK,
            target=str(interaction.channel_id),
            user=user.name,
            may_manage=interaction.permissions.manage_channels,
            destination_options={"guild_id": str(interaction.guild_id)},
        )

    async def dm_channel(self, user_id: int) -> int:
        """The bot's DM channel with the user (``POST /users/@me/channels``, which
        returns the open one or opens it; the id goes as a string, as Discord's
        OpenAPI spec writes snowflakes: discord.py's ``create_dm`` sends an integer)."""
        route = Route("POST", "/users/@me/channels")
        data = await self.client.http.request(route, json={"recipient_id": str(user_id)})
        return int(data["id"])

    async def run_command(
        self, interaction: discord.Interaction, command: Command, *, slow: bool = False
    ) -> None:
        """Run ``command`` and answer; ``slow`` (it fetches something) defers the
        answer first, as Discord wants one within 3 seconds."""
        if slow:
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            reply = await self.service.execute(command, await self.context(interaction))
        except Exception:
            log.exception("/alerts %s failed in channel %s", command.verb, interaction.channel_id)
            reply = Reply("Sorry, that failed on our side; the operator has the details.", ok=False)
        await self.reply(interaction, reply)

    async def reply(self, interaction: discord.Interaction, reply: Reply) -> None:
        text = cut(reply.text, REPLY_MAX)
        mentions = discord.AllowedMentions.none()
        if interaction.response.is_done():  # deferred: the answer is a follow-up
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=mentions)
            return
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=mentions)

    async def forget_guild(self, guild_id: int) -> None:
        """The bot left (or was removed from) a guild: drop its channels' subscriptions."""
        dropped = 0
        for row in await self.service.store.list_destinations():
            destination = row.destination
            if destination.sink == SINK and destination.options.get("guild_id") == str(guild_id):
                dropped += await self.service.forget_room(
                    SINK, destination.target, reason=f"the bot left guild {guild_id}"
                )
        log.info("left guild %s: dropped %d subscription(s)", guild_id, dropped)
