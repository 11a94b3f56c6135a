"""Discord's gateway intents by hikari's names: what ``[bot] intents`` may list.

A table of Discord's documented bits rather than ``hikari.Intents``, so that the master checks
and sends intents without importing hikari (it never runs a shard). A test holds it equal to
hikari's.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

SINGLE: dict[str, int] = {
    name: 1 << bit
    for bit, name in (
        (0, "GUILDS"),
        (1, "GUILD_MEMBERS"),
        (2, "GUILD_MODERATION"),
        (3, "GUILD_EMOJIS"),
        (4, "GUILD_INTEGRATIONS"),
        (5, "GUILD_WEBHOOKS"),
        (6, "GUILD_INVITES"),
        (7, "GUILD_VOICE_STATES"),
        (8, "GUILD_PRESENCES"),
        (9, "GUILD_MESSAGES"),
        (10, "GUILD_MESSAGE_REACTIONS"),
        (11, "GUILD_MESSAGE_TYPING"),
        (12, "DM_MESSAGES"),
        (13, "DM_MESSAGE_REACTIONS"),
        (14, "DM_MESSAGE_TYPING"),
        (15, "MESSAGE_CONTENT"),
        (16, "GUILD_SCHEDULED_EVENTS"),
        (20, "AUTO_MODERATION_CONFIGURATION"),
        (21, "AUTO_MODERATION_EXECUTION"),
        (24, "GUILD_MESSAGE_POLLS"),
        (25, "DIRECT_MESSAGE_POLLS"),
    )
}


def _any(*names: str) -> int:
    return reduce(or_, (SINGLE[name] for name in names))


_ALL = reduce(or_, SINGLE.values())
_PRIVILEGED = _any("GUILD_MEMBERS", "GUILD_PRESENCES", "MESSAGE_CONTENT")
_DMS = _any("DM_MESSAGES", "DM_MESSAGE_REACTIONS", "DM_MESSAGE_TYPING", "DIRECT_MESSAGE_POLLS")
_NOT_GUILD = _DMS | _any(
    "MESSAGE_CONTENT", "AUTO_MODERATION_CONFIGURATION", "AUTO_MODERATION_EXECUTION"
)

INTENTS: dict[str, int] = {
    **SINGLE,
    "ALL_GUILDS_UNPRIVILEGED": _ALL & ~_NOT_GUILD & ~_PRIVILEGED,
    "ALL_GUILDS_PRIVILEGED": _any("GUILD_MEMBERS", "GUILD_PRESENCES"),
    "ALL_GUILDS": _ALL & ~_NOT_GUILD,
    "ALL_DMS": _DMS,
    "ALL_MESSAGES": _any("GUILD_MESSAGES", "DM_MESSAGES"),
    "ALL_POLLS": _any("GUILD_MESSAGE_POLLS", "DIRECT_MESSAGE_POLLS"),
    "ALL_MESSAGE_REACTIONS": _any("GUILD_MESSAGE_REACTIONS", "DM_MESSAGE_REACTIONS"),
    "ALL_MESSAGE_TYPING": _any("GUILD_MESSAGE_TYPING", "DM_MESSAGE_TYPING"),
    "ALL_AUTO_MODERATION": _any("AUTO_MODERATION_CONFIGURATION", "AUTO_MODERATION_EXECUTION"),
    "ALL_UNPRIVILEGED": _ALL & ~_PRIVILEGED,
    "ALL_PRIVILEGED": _PRIVILEGED,
    "ALL": _ALL,
}


def intent_value(names: list[str]) -> int:
    """The bits of ``names``, all of which must be keys of ``INTENTS``."""
    return reduce(or_, (INTENTS[name] for name in names), 0)
