"""The simulated world: guilds, channels, roles, members, users and custom emoji, from a seed.

Building a world costs O(guilds) small integers; a guild's contents are derived from its index on
demand, so a 100,000-guild world builds in well under a second and identical seeds give identical
worlds in every process.

Ids are real snowflakes. Guild ``i`` is created at millisecond ``GUILD_EPOCH_OFFSET + i`` after
Discord's epoch, so ``(guild_id >> 22) % shards`` cycles through every shard: guilds spread
evenly over any shard count. A guild's low 22 bits are zero and its channels, roles and emoji
take small low-bit values, so ``id & ~LOW_BITS`` of any of them gives back its guild.
"""

from __future__ import annotations

import base64
import functools
import random
from dataclasses import dataclass, field

DISCORD_EPOCH_MS = 1_420_070_400_000
LOW_BITS = (1 << 22) - 1
GUILD_EPOCH_OFFSET = 200_000_000_000  # ms after Discord's epoch: guilds made in 2021
USER_EPOCH_OFFSET = 100_000_000_000  # users are older than the guilds they are in
BOT_USER_INDEX = 0

CHANNEL_BASE = 0x100
ROLE_BASE = 0x200
EMOJI_BASE = 0x300
PER_GUILD_LIMIT = 0x100  # channels, roles and emoji per guild each stay below this
GUILD_CACHE = 16_384

WORDS = (
    "amber", "birch", "cobalt", "delta", "ember", "fjord", "granite", "harbor", "iris", "juniper",
    "kestrel", "lumen", "meadow", "nimbus", "onyx", "prism", "quartz", "raven", "sierra", "tundra",
)  # fmt: skip


def user_id(index: int) -> int:
    return ((USER_EPOCH_OFFSET + index) << 22) | 1


def guild_of(snowflake: int) -> int:
    """The guild a channel, role or emoji id belongs to (a guild id maps to itself)."""
    return snowflake & ~LOW_BITS


@dataclass(frozen=True, slots=True)
class Emoji:
    id: int
    name: str
    animated: bool


@dataclass(frozen=True, slots=True)
class Guild:
    id: int
    name: str
    owner_id: int
    channel_ids: list[int]
    role_ids: list[int]  # the first is @everyone, whose id is the guild's
    member_ids: list[int]
    emojis: list[Emoji]


@dataclass
class World:
    """A deterministic world; guilds can be added and removed while it serves."""

    seed: int
    guild_count: int
    channels_per_guild: int = 3
    roles_per_guild: int = 3
    members_per_guild: int = 25
    emojis_per_guild: int = 2
    user_count: int = 0  # 0: enough users that each is in several guilds
    guild_ids: list[int] = field(init=False)
    _next_index: int = field(init=False)
    _removed: set[int] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        for name in ("channels_per_guild", "roles_per_guild", "emojis_per_guild"):
            value = getattr(self, name)
            if not 0 <= value < PER_GUILD_LIMIT - 1:
                raise ValueError(f"{name} must be between 0 and {PER_GUILD_LIMIT - 2}, got {value}")
        if self.members_per_guild < 0:
            raise ValueError(
                f"members_per_guild must not be negative, got {self.members_per_guild}"
            )
        if self.user_count < 0:
            raise ValueError(f"user_count must not be negative, got {self.user_count}")
        if self.guild_count < 0:
            raise ValueError(f"guild_count must not be negative, got {self.guild_count}")
        if self.user_count == 0:
            self.user_count = max(self.members_per_guild + 1, self.guild_count * 2)
        if self.members_per_guild > self.user_count - 1:
            raise ValueError(
                f"members_per_guild ({self.members_per_guild}) exceeds the users "
                f"other than the bot ({self.user_count - 1})"
            )
        self.guild_ids = [self._guild_id(index) for index in range(self.guild_count)]
        self._next_index = self.guild_count
        # Building a guild costs ~13 µs and every event needs its guild: keep the busy ones.
        self._build_guild = functools.lru_cache(maxsize=GUILD_CACHE)(self._build_guild)  # type: ignore[method-assign]

    @property
    def bot_id(self) -> int:
        return user_id(BOT_USER_INDEX)

    def token(self) -> str:
        """A bot token in Discord's shape: base64 of the bot's id, then two opaque parts."""
        prefix = base64.b64encode(str(self.bot_id).encode()).decode().rstrip("=")
        secret = random.Random(self.seed).randbytes(20).hex()
        return f"{prefix}.sim.{secret}"

    def guild(self, guild_id: int) -> Guild:
        self._index(guild_id)  # a removed or unknown guild raises even if it is cached
        return self._build_guild(guild_id)

    def _build_guild(self, guild_id: int) -> Guild:
        index = self._index(guild_id)
        rng = random.Random(self.seed * 1_000_003 + index)
        members = self.members_per_guild
        # A window of consecutive users starting at a per-guild offset: every user sits in
        # several guilds, and no user twice in one. User 0 is the bot, a member of every guild.
        start = 1 + (index * 7919) % max(1, self.user_count - 1)
        member_ids = [self.bot_id] + [
            user_id(1 + (start - 1 + offset) % (self.user_count - 1)) for offset in range(members)
        ]
        return Guild(
            id=guild_id,
            name=f"{rng.choice(WORDS)} {rng.choice(WORDS)} {index}",
            owner_id=member_ids[1] if members else self.bot_id,
            channel_ids=[guild_id | (CHANNEL_BASE + n) for n in range(self.channels_per_guild)],
            role_ids=[guild_id] + [guild_id | (ROLE_BASE + n) for n in range(self.roles_per_guild)],
            member_ids=member_ids,
            emojis=[
                Emoji(
                    id=guild_id | (EMOJI_BASE + n),
                    name=f"{rng.choice(WORDS)}{n}",
                    animated=n % 2 == 1,
                )
                for n in range(self.emojis_per_guild)
            ],
        )

    def add_guild(self) -> int:
        guild_id = self._guild_id(self._next_index)
        self._next_index += 1
        self.guild_ids.append(guild_id)
        return guild_id

    def remove_guild(self, guild_id: int) -> None:
        self._index(guild_id)
        self._removed.add(guild_id)
        self.guild_ids.remove(guild_id)

    def has_guild(self, guild_id: int) -> bool:
        index = (guild_id >> 22) - GUILD_EPOCH_OFFSET
        return (
            guild_id & LOW_BITS == 0
            and 0 <= index < self._next_index
            and guild_id not in self._removed
        )

    def has_user(self, snowflake: int) -> bool:
        index = (snowflake >> 22) - USER_EPOCH_OFFSET
        return snowflake & LOW_BITS == 1 and 0 <= index < self.user_count

    @staticmethod
    def _guild_id(index: int) -> int:
        return (GUILD_EPOCH_OFFSET + index) << 22

    def _index(self, guild_id: int) -> int:
        if not self.has_guild(guild_id):
            raise KeyError(f"no guild {guild_id} in this world")
        return (guild_id >> 22) - GUILD_EPOCH_OFFSET
