"""The sharder's configuration: a TOML file, validated with msgspec, plus command-line overrides.

Every option has a default, so an empty file (or none) is a valid configuration; a bad file or
value is refused with a message naming the key and the problem (``ConfigError``). The token is
never in the file: it comes from the environment variable ``[bot].token_env`` names.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from sharder.intents import INTENTS

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Fraction = Annotated[float, msgspec.Meta(gt=0, le=1)]

DEFAULT_API_URL = "https://discord.com/api/v10"
DEFAULT_ENTRY_POINT = "worker.reference_bot:setup"
DISCORD_IDENTIFY_WINDOW = 5.0
DISCORD_SESSION_PERIOD = 86_400.0
MIN_ADMIN_TOKEN = 16


class ConfigError(Exception):
    """A configuration that cannot run; the message names the key and the problem."""


class BotSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # ``module:function``, called in every worker as function(bot, ctx) before the shards start.
    entry_point: Annotated[str, msgspec.Meta(pattern=r"^[\w.]+:\w+$")] = DEFAULT_ENTRY_POINT
    token_env: Annotated[str, msgspec.Meta(min_length=1)] = "DISCORD_TOKEN"
    # hikari Intents names; the default lets the reference bot read commands.
    intents: list[str] = msgspec.field(
        default_factory=lambda: ["ALL_UNPRIVILEGED", "MESSAGE_CONTENT"]
    )


class DiscordSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    api_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = DEFAULT_API_URL


class ShardingSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    shards: Count = 1
    workers: Count = 1
    # Move shards on their own when a worker carries far more than the average: by guilds, or
    # by events per second; never more than one move at a time.
    rebalance: Literal["off", "guilds", "events"] = "off"
    # "Far more": the busiest worker's load past this times the average ...
    rebalance_threshold: Annotated[float, msgspec.Meta(gt=1.0, le=100.0)] = 1.5
    # ... for this long without a break (and as long again after every move).
    rebalance_after: Positive = 300.0
    # Reshard live to Discord's recommendation when it closes a shard with 4011 (the bot needs
    # more shards), and when the recommendation reaches this times the shards run (0: never),
    # asked every reshard_check_interval seconds.
    reshard_on_4011: bool = True
    reshard_at: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    reshard_check_interval: Annotated[float, msgspec.Meta(ge=1.0)] = 3600.0


class SupervisorSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    heartbeat_interval: Positive = 1.0  # seconds between pings to each worker
    heartbeat_misses: Count = 3  # beats of silence that make a process hung
    # A worker's event loop may be busy (a large guild load, a slow handler) while its process
    # answers; it is hung only when the loop has not turned for this long, like a watchdog.
    loop_stall_timeout: Positive = 60.0
    worker_start_timeout: Positive = 60.0  # spawn to hello
    restart_backoff: Positive = 0.5  # first delay before a restart; doubles per restart
    restart_backoff_max: Positive = 30.0
    crash_loop_restarts: Count = 5  # more restarts than this within the window: failed
    crash_loop_window: Positive = 60.0
    shutdown_timeout: Positive = 10.0  # graceful stop, then SIGKILL
    request_timeout: Positive = 5.0  # default deadline of ctx.request / ctx.broadcast
    resume_sessions: bool = True  # a restarted worker's shards RESUME instead of IDENTIFYing
    # A handed-over session resumes from where it stood this long before: events received but
    # not yet handled when the process died are replayed rather than lost.
    replay_margin: Annotated[float, msgspec.Meta(ge=0, le=25)] = 2.0
    # A rolling restart stops where a worker's new process is not loaded, or its shards not
    # all ready, this long after the step began (the old processes keep serving); a shard move
    # where the shard is not released, or not ready on its new worker, as long.
    change_step_timeout: Positive = 120.0


class ComputeSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The compute pool: processes for CPU work (math, emoji images) off the shard workers."""

    workers: Annotated[int, msgspec.Meta(ge=0)] = 0  # compute processes; 0: one per core
    queue_size: Annotated[int, msgspec.Meta(ge=0)] = 64  # tasks waiting for a free process
    task_timeout: Positive = 10.0  # default deadline of ctx.compute calls
    cpu_seconds: Count = 5  # CPU time one task may use (RLIMIT_CPU), then the process dies
    memory_mb: Count = 1024  # address space of a compute process (RLIMIT_AS)
    # Added to a compute process's nice value, so that shard workers get the CPU first.
    niceness: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10
    # ``module:function`` called in each compute process with its task registry: own tasks.
    entry_point: Annotated[str, msgspec.Meta(pattern=r"^([\w.]+:\w+)?$")] = ""
    max_emoji: Count = 10  # emoji one !jumbo composes
    jumbo_height: Annotated[int, msgspec.Meta(ge=16, le=512)] = 128  # pixels
    custom_emoji_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = (
        "https://cdn.discordapp.com/emojis/"
    )
    unicode_emoji_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = (
        "https://cdn.jsdelivr.net/gh/jdecked/twemoji@15.1.0/assets/72x72/"
    )
    emoji_timeout: Positive = 5.0  # per image fetch
    emoji_max_bytes: Count = 2 * 1024 * 1024  # per image fetched
    emoji_cache_mb: Annotated[int, msgspec.Meta(ge=0)] = 32  # fetched images kept per process


class RestSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The REST gate: every worker's REST calls through one process that keeps the limits."""

    gate: bool = True  # false: workers call the API directly, each on its own
    port: Port = 0  # the gate's loopback port; 0: any free one
    global_limit: Count = 50  # requests per second for the whole bot (raised limits: more)
    max_wait: Positive = 30.0  # a request not admitted by then is refused (HTTP 408)
    invalid_limit: Count = 10_000  # invalid requests per 10 minutes that get an IP banned
    slowdown_at: Fraction = 0.5  # of invalid_limit: the global rate drops to a fifth
    refuse_at: Fraction = 0.95  # of invalid_limit: requests are refused


class StateSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: Annotated[str, msgspec.Meta(min_length=1)] = "sharder-state.db"  # SQLite, WAL
    # Users whose shared data each worker keeps after reading it; the rest stay in the master.
    user_cache: Count = 10_000


class ControlSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    socket: Annotated[str, msgspec.Meta(min_length=1)] = "sharder.sock"


class MetricsSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Prometheus metrics (``/metrics``) and the live dashboard (``/``) on one HTTP listener."""

    enabled: bool = True
    # host:port; port 0 picks a free one (``status`` says which). Anything but loopback is
    # reachable by others: the dashboard shows the bot's layout and load to whoever opens it.
    address: Annotated[str, msgspec.Meta(pattern=r"^\S+:\d{1,5}$")] = "127.0.0.1:9464"
    # Set: the dashboard's restart buttons work for whoever gives it; unset: read-only. Keep
    # the file private (0600) when it holds one.
    admin_token: str = ""

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


class SimulatorSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What ``--simulate`` starts: the simulator's world and traffic."""

    guilds: Annotated[int, msgspec.Meta(ge=0)] = 200
    members_per_guild: Annotated[int, msgspec.Meta(ge=0, le=250_000)] = 25
    channels_per_guild: Annotated[int, msgspec.Meta(ge=1, le=500)] = 3
    max_concurrency: Count = 16
    identify_window: Positive = 5.0  # Discord's; tests shrink it
    session_start_limit: Count = 1000
    session_start_reset: Positive = 86_400.0
    strict: bool = False  # the simulator also closes identify offenders
    rest_route_limit: Count = 5  # requests per route bucket per window (Discord's for messages)
    rest_route_window: Positive = 5.0
    rest_global_limit: Count = 50  # REST requests per second per bot (Discord's default)
    traffic_rate: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    seed: int = 1
    # GET /gateway/bot recommends a shard per this many guilds (0: the configured shards), and
    # a shard with more than max_guilds_per_shard is closed with 4011, as Discord does.
    guilds_per_shard: Annotated[int, msgspec.Meta(ge=0)] = 1000
    max_guilds_per_shard: Count = 2500


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    bot: BotSection = msgspec.field(default_factory=BotSection)
    discord: DiscordSection = msgspec.field(default_factory=DiscordSection)
    sharding: ShardingSection = msgspec.field(default_factory=ShardingSection)
    supervisor: SupervisorSection = msgspec.field(default_factory=SupervisorSection)
    control: ControlSection = msgspec.field(default_factory=ControlSection)
    state: StateSection = msgspec.field(default_factory=StateSection)
    compute: ComputeSection = msgspec.field(default_factory=ComputeSection)
    rest: RestSection = msgspec.field(default_factory=RestSection)
    simulator: SimulatorSection = msgspec.field(default_factory=SimulatorSection)
    metrics: MetricsSection = msgspec.field(default_factory=MetricsSection)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one JSON object per line, for log shippers; "text": for people.
    log_format: Literal["text", "json"] = "text"

    def check(self) -> None:
        """Rules between keys, which field constraints cannot state."""
        if 0.0 < self.sharding.reshard_at <= 1.0:
            raise ConfigError(
                "sharding.reshard_at is a factor above 1 (reshard when Discord recommends that "
                f"many times the shards run), or 0 for never; got {self.sharding.reshard_at}"
            )
        if self.sharding.workers > self.sharding.shards:
            raise ConfigError(
                f"sharding.workers ({self.sharding.workers}) must not exceed "
                f"sharding.shards ({self.sharding.shards}): a worker needs a shard"
            )
        _, port = self.metrics.host_port()
        if port > 65535:
            raise ConfigError(f"metrics.address: port {port} is past 65535")
        if 0 < len(self.metrics.admin_token) < MIN_ADMIN_TOKEN:
            raise ConfigError(
                f"metrics.admin_token: at least {MIN_ADMIN_TOKEN} characters (it guards restarts)"
            )
        supervisor = self.supervisor
        if supervisor.restart_backoff > supervisor.restart_backoff_max:
            raise ConfigError("supervisor.restart_backoff must not exceed restart_backoff_max")
        intents = set(self.bot.intents)
        unknown = sorted(intents - set(INTENTS))
        if unknown:
            raise ConfigError(f"bot.intents: unknown intent(s) {', '.join(unknown)}")


def load(path: Path | None) -> Config:
    """The configuration in ``path`` (defaults only when None)."""
    if path is None:
        config = Config()
    else:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error.strerror}") from None
        try:
            document = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
        try:
            config = msgspec.convert(document, Config)
        except msgspec.ValidationError as error:
            raise ConfigError(f"{path}: {describe(error)}") from None
    config.check()
    return config


def describe(error: msgspec.ValidationError) -> str:
    """msgspec's message with its ``$.section.key`` path turned into ``section.key``."""
    message, _, path = str(error).partition(" - at `$.")
    return f"{path.rstrip('`')}: {message}" if path else message


def token_from_environment(config: Config) -> str | None:
    token = os.environ.get(config.bot.token_env, "").strip()
    return token or None
