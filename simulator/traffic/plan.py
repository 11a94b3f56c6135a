"""The deterministic sequence of events a spec makes in a world: which guild, which member,
which kind of event, and what it carries."""

from __future__ import annotations

import functools
import itertools
import random
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

from simulator.payloads import Payload
from simulator.traffic.spec import EVENT_KINDS, EventKind, TrafficSpec, cumulative_weights
from simulator.traffic.speech import Speech
from simulator.world import Guild, World

STATUSES: Final = ("online", "idle", "dnd", "offline")
STRING_OPTION: Final = 3  # Discord's application command option type for a string
SKEW_EXPONENT: Final = 1.1  # Zipf-like: the guild of rank r gets weight 1 / (r + 1) ** 1.1
TABLE_CACHE: Final = 8192  # guilds a plan keeps built (~2.5 kB each; the busy ones, when skewed)


@dataclass(frozen=True, slots=True)
class TrafficEvent:
    """One thing a user does. Fields a kind does not use keep their empty defaults."""

    kind: EventKind
    guild_id: int
    user_id: int
    channel_id: int = 0  # message, interaction (0: not in a channel)
    content: str = ""  # message
    nick: str | None = None  # member_update (None clears the nickname)
    status: str = ""  # presence_update
    command: str = ""  # interaction
    options: tuple[Payload, ...] = ()  # interaction


@dataclass(frozen=True, slots=True)
class _GuildTable:
    """A guild and its custom emoji in message syntax (<:name:id>, <a:name:id>), built once."""

    guild: Guild
    custom_emoji: tuple[str, ...]


class TrafficPlan:
    """The deterministic sequence of events a spec makes in a world.

    Draws come from one ``random.Random(spec.seed)`` in a fixed order, so the sequence depends
    only on the world and the seed. When guilds are added to or removed from the world the plan
    rebuilds its guild table at the next draw: removed guilds get nothing, new ones join in.
    """

    def __init__(self, world: World, spec: TrafficSpec) -> None:
        self.world = world
        self.spec = spec
        self._random = random.Random(spec.seed).random
        self._speech = Speech(self._random, spec.contents)
        self._kinds, self._kind_totals = cumulative_weights(spec.mix, EVENT_KINDS)
        self._skewed = spec.distribution == "skewed"
        # A world without channels or without members other than the bot has nobody to talk.
        self._active = world.channels_per_guild > 0 and world.members_per_guild > 0
        self._table = functools.lru_cache(maxsize=TABLE_CACHE)(self._build_table)
        self._guild_ids: list[int] = []
        self._guild_totals: list[float] = []
        self._fingerprint: tuple[int, int] = (-1, -1)
        self._refresh()

    def guild(self, guild_id: int) -> Guild:
        """The world's guild, from the plan's cache (``World.guild`` rebuilds it every call)."""
        return self._table(guild_id).guild

    def next_event(self) -> TrafficEvent | None:
        """The next event, or None while the world has no guild anybody can talk in."""
        ids = self.world.guild_ids
        # Guilds are appended with ever larger ids and removed from anywhere, so the length and
        # the last id change whenever the set of guilds does: an O(1) check per draw.
        if (len(ids), ids[-1] if ids else 0) != self._fingerprint:
            self._refresh()
        guild_ids = self._guild_ids
        if not guild_ids:
            return None
        rand = self._random
        count = len(guild_ids)
        if self._skewed:
            index = bisect_right(self._guild_totals, rand() * self._guild_totals[-1], 0, count - 1)
        else:
            index = int(rand() * count)
        table = self._table(guild_ids[index])
        kind = self._kinds[
            bisect_right(self._kind_totals, rand() * self._kind_totals[-1], 0, len(self._kinds) - 1)
        ]
        guild = table.guild
        members = guild.member_ids
        user_id = members[1 + int(rand() * (len(members) - 1))]  # members[0] is the bot
        guild_id = guild.id
        speech = self._speech
        if kind == "message":
            channels = guild.channel_ids
            return TrafficEvent(
                kind,
                guild_id,
                user_id,
                channel_id=channels[int(rand() * len(channels))],
                content=speech.message(table.custom_emoji),
            )
        if kind == "interaction":
            channels = guild.channel_ids
            channel_id = channels[int(rand() * len(channels))]
            if rand() < 0.5:
                return TrafficEvent(kind, guild_id, user_id, channel_id=channel_id, command="ping")
            option = {"name": "expression", "type": STRING_OPTION, "value": speech.expression()}
            return TrafficEvent(
                kind, guild_id, user_id, channel_id=channel_id, command="math", options=(option,)
            )
        if kind == "member_update":
            return TrafficEvent(kind, guild_id, user_id, nick=speech.nick())
        return TrafficEvent(kind, guild_id, user_id, status=STATUSES[int(rand() * len(STATUSES))])

    def _refresh(self) -> None:
        ids = self.world.guild_ids
        self._fingerprint = (len(ids), ids[-1] if ids else 0)
        if not self._active:
            self._guild_ids, self._guild_totals = [], []
            return
        if not self._skewed:
            self._guild_ids, self._guild_totals = list(ids), []
            return
        # Rank guilds by a seeded hash of their id rather than a shuffle of the list: adding or
        # removing one guild then leaves the others' order alone, so busy guilds stay busy.
        salt = (self.spec.seed * 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF

        def rank_key(guild_id: int) -> int:
            return ((guild_id ^ salt) * 0xBF58_476D_1CE4_E5B9) & 0xFFFF_FFFF_FFFF_FFFF

        self._guild_ids = sorted(ids, key=rank_key)
        self._guild_totals = list(
            itertools.accumulate(
                1.0 / (rank + 1) ** SKEW_EXPONENT for rank in range(len(self._guild_ids))
            )
        )

    def _build_table(self, guild_id: int) -> _GuildTable:
        guild = self.world.guild(guild_id)
        return _GuildTable(
            guild=guild,
            custom_emoji=tuple(
                f"<{'a' if emoji.animated else ''}:{emoji.name}:{emoji.id}>"
                for emoji in guild.emojis
            ),
        )
