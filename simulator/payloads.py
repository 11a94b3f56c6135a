"""Discord's JSON shapes for the world's objects, as the gateway and REST send them.

Clients parse these strictly (hikari's entity factory needs every field a real payload has), so
each builder emits the full object. Snowflakes are strings, as Discord sends them. Payloads of
world objects that never change (users, roles, channels) are cached per factory.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import time
import zlib
from typing import Any

from simulator.world import DISCORD_EPOCH_MS, Emoji, Guild, World, guild_of

Payload = dict[str, Any]

APPLICATION_FLAGS = (1 << 13) | (1 << 15) | (1 << 19)  # members, content, presence (limited)
EVERYONE_PERMISSIONS = 0x0000_0006_4006_3E41  # Discord's default @everyone set
ADMINISTRATOR = 0x8
MESSAGE_TYPE_DEFAULT = 0
MESSAGE_TYPE_REPLY = 19
CHANNEL_TYPE_TEXT = 0
INTERACTION_TYPE_COMMAND = 2


def snowflake_time(snowflake: int) -> str:
    milliseconds = (snowflake >> 22) + DISCORD_EPOCH_MS
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.UTC)
    return moment.isoformat()


def command_id(bot_id: int, name: str) -> int:
    """A stable id per command name, so an interaction names the command the bot registered."""
    return (bot_id & ~0xFFFF_FFFF) | zlib.crc32(name.encode())


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).isoformat()


class SnowflakeFactory:
    """New ids for things made while serving (messages, sessions, interactions), time-ordered."""

    def __init__(self) -> None:
        self._increment = itertools.count()

    def next(self) -> int:
        milliseconds = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (milliseconds << 22) | (next(self._increment) & 0xFFF) | (1 << 12)


class PayloadFactory:
    def __init__(self, world: World) -> None:
        self.world = world
        self.user = functools.lru_cache(maxsize=65_536)(self._user)

    # -- users and the application -------------------------------------------------------

    def _user(self, user_id: int) -> Payload:
        is_bot = user_id == self.world.bot_id
        name = "sharder-sim" if is_bot else f"user{(user_id >> 22) & 0xFFFFFF}"
        return {
            "id": str(user_id),
            "username": name,
            "global_name": None if is_bot else name.capitalize(),
            "discriminator": "0",
            "avatar": None,
            "banner": None,
            "accent_color": None,
            "bot": is_bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "avatar_decoration_data": None,
            "primary_guild": None,
        }

    def own_user(self) -> Payload:
        return {
            **self.user(self.world.bot_id),
            "mfa_enabled": False,
            "locale": "en-US",
            "verified": True,
            "email": None,
            "premium_type": 0,
        }

    def application(self) -> Payload:
        bot_id = str(self.world.bot_id)
        owner = self.user(self.world.bot_id)
        return {
            "id": bot_id,
            "name": "sharder-sim",
            "icon": None,
            "description": "A bot in the sharder simulator",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": APPLICATION_FLAGS,
            "owner": owner,
            "team": None,
            "rpc_origins": [],
            "terms_of_service_url": None,
            "privacy_policy_url": None,
            "custom_install_url": None,
            "tags": [],
            "approximate_guild_count": len(self.world.guild_ids),
            "approximate_user_install_count": 0,
            "bot": owner,
            "install_params": None,
            "integration_types_config": {"0": {}},
            "role_connections_verification_url": None,
            "interactions_endpoint_url": None,
            "cover_image": None,
        }

    # -- guild contents --------------------------------------------------------------------

    def role(self, guild: Guild, role_id: int) -> Payload:
        position = guild.role_ids.index(role_id)
        is_everyone = role_id == guild.id
        return {
            "id": str(role_id),
            "name": "@everyone" if is_everyone else f"role-{position}",
            "color": 0 if is_everyone else 0x3498DB + position,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            # The first role after @everyone is the moderators' (administrators); the rest give
            # nothing beyond @everyone, so some members may manage the guild and some may not.
            "permissions": str(ADMINISTRATOR if position == 1 else EVERYONE_PERMISSIONS),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    def channel(self, guild: Guild, channel_id: int) -> Payload:
        position = guild.channel_ids.index(channel_id)
        return {
            "id": str(channel_id),
            "type": CHANNEL_TYPE_TEXT,
            "guild_id": str(guild.id),
            "name": f"channel-{position}",
            "position": position,
            "permission_overwrites": [],
            "nsfw": False,
            "topic": None,
            "last_message_id": None,
            "last_pin_timestamp": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def emoji(self, emoji: Emoji) -> Payload:
        return {
            "id": str(emoji.id),
            "name": emoji.name,
            "roles": [],
            "require_colons": True,
            "managed": False,
            "animated": emoji.animated,
            "available": True,
        }

    def member_role(self, guild: Guild, user_id: int) -> int | None:
        """Members hold every role but @everyone in turn, so permissions differ across members."""
        own_roles = guild.role_ids[1:]
        return own_roles[user_id % len(own_roles)] if own_roles else None

    def is_moderator(self, guild: Guild, user_id: int) -> bool:
        """Holds the first role after @everyone, the one with Administrator."""
        role = self.member_role(guild, user_id)
        return role is not None and role == guild.role_ids[1]

    def member(self, guild: Guild, user_id: int, *, with_user: bool = True) -> Payload:
        role = self.member_role(guild, user_id)
        roles = [str(role)] if role is not None else []
        member: Payload = {
            "nick": None,
            "avatar": None,
            "banner": None,
            "roles": roles,
            "joined_at": snowflake_time(guild.id),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
            "avatar_decoration_data": None,
        }
        if with_user:
            member["user"] = self.user(user_id)
        return member

    def guild(self, guild: Guild) -> Payload:
        """The guild object of REST ``GET /guilds/{id}`` (no members or channels)."""
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "icon_hash": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(guild.owner_id),
            "region": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [self.role(guild, role_id) for role_id in guild.role_ids],
            "emojis": [self.emoji(emoji) for emoji in guild.emojis],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_presences": None,
            "max_members": 500_000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "approximate_member_count": len(guild.member_ids),
            "approximate_presence_count": 0,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }

    def guild_create(self, guild: Guild, *, available: bool) -> Payload:
        """GUILD_CREATE: ``available`` for a guild READY listed, absent for one just joined."""
        payload = self.guild(guild)
        payload.update(
            joined_at=snowflake_time(guild.id),
            large=False,
            member_count=len(guild.member_ids),
            members=[self.member(guild, user_id) for user_id in guild.member_ids],
            channels=[self.channel(guild, channel_id) for channel_id in guild.channel_ids],
            threads=[],
            presences=[],
            voice_states=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        if available:
            payload["unavailable"] = False
        return payload

    # -- gateway session -------------------------------------------------------------------

    def ready(
        self, *, session_id: str, resume_url: str, shard: tuple[int, int], guild_ids: list[int]
    ) -> Payload:
        return {
            "v": 10,
            "user": self.own_user(),
            "guilds": [{"id": str(guild_id), "unavailable": True} for guild_id in guild_ids],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": resume_url,
            "shard": list(shard),
            "application": {"id": str(self.world.bot_id), "flags": APPLICATION_FLAGS},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "_trace": ["sharder-simulator"],
        }

    # -- traffic ---------------------------------------------------------------------------

    def message(
        self,
        *,
        message_id: int,
        channel_id: int,
        author_id: int,
        content: str,
        attachments: list[Payload] | None = None,
        embeds: list[Payload] | None = None,
        message_reference: Payload | None = None,
    ) -> Payload:
        guild_id = guild_of(channel_id)
        payload: Payload = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(guild_id),
            "author": self.user(author_id),
            "member": self.member(self.world.guild(guild_id), author_id, with_user=False),
            "content": content,
            "timestamp": snowflake_time(message_id),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "mention_channels": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "reactions": [],
            "pinned": False,
            "type": MESSAGE_TYPE_REPLY if message_reference else MESSAGE_TYPE_DEFAULT,
            "flags": 0,
            "components": [],
        }
        if message_reference is not None:
            payload["message_reference"] = message_reference
        return payload

    def member_update(self, guild: Guild, user_id: int, nick: str | None) -> Payload:
        member = self.member(guild, user_id)
        member["nick"] = nick
        member["guild_id"] = str(guild.id)
        return member

    def presence_update(self, guild: Guild, user_id: int, status: str) -> Payload:
        return {
            "user": {"id": str(user_id)},
            "guild_id": str(guild.id),
            "status": status,
            "activities": [],
            "client_status": {"desktop": status} if status != "offline" else {},
        }

    def interaction(
        self,
        *,
        interaction_id: int,
        token: str,
        channel_id: int,
        user_id: int,
        command_name: str,
        command_id: int,
        options: list[Payload],
    ) -> Payload:
        guild = self.world.guild(guild_of(channel_id))
        member = self.member(guild, user_id)
        member["permissions"] = str(EVERYONE_PERMISSIONS)
        return {
            "id": str(interaction_id),
            "application_id": str(self.world.bot_id),
            "type": INTERACTION_TYPE_COMMAND,
            "token": token,
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel_id),
            "channel": self.channel(guild, channel_id),
            "member": member,
            "data": {
                "id": str(command_id),
                "name": command_name,
                "type": 1,
                "options": options,
            },
            "locale": "en-US",
            "guild_locale": "en-US",
            "app_permissions": str(ADMINISTRATOR),
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 10_485_760,
        }
