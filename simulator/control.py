"""The control API under ``/_sim/``: how tests and benchmarks drive the simulator and read it.

Inject what users do (messages, slash commands, traffic), force what Discord does to a shard
(RECONNECT, INVALID_SESSION, a dropped TCP connection, a close code) or to a REST route (a
shared 429 for every caller, ``POST /_sim/ratelimits/shared``), change the world (guilds
joining and leaving), and read the truth (stats, sessions, the bot's messages, each guild's
dispatches by shard count). Bodies are validated where they enter: a bad one gets a 400 that
says what is wrong.
"""

from __future__ import annotations

import asyncio
import random
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from aiohttp import hdrs, web

from simulator.gateway.connection import GatewayConnection
from simulator.gateway.hub import Gateway
from simulator.gateway.protocol import Op
from simulator.messages import MessageLog
from simulator.payloads import PayloadFactory
from simulator.responses import Handler, error_response, json_response
from simulator.rest import API_PREFIX
from simulator.rest.api import RestApi
from simulator.stats import Stats
from simulator.traffic.generator import TrafficGenerator
from simulator.traffic.spec import TrafficSpec
from simulator.world import Guild, World, guild_of

Body = TypeVar("Body", bound=msgspec.Struct)

MAX_NEW_GUILDS: Final = 10_000  # guilds one POST /_sim/guilds may add
# Guilds joined between yields to the event loop: a GUILD_CREATE takes ~0.1 ms to build, and
# ten thousand at once would stall every connection for a second.
GUILDS_PER_TURN: Final = 256


class InjectedMessage(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    content: str
    guild_id: int | None = None
    channel_id: int | None = None
    author_id: int | None = None


class InjectedInteraction(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    command: str
    options: list[dict[str, Any]] = msgspec.field(default_factory=list)
    guild_id: int | None = None
    channel_id: int | None = None
    user_id: int | None = None


class InjectedPresence(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: Literal["online", "idle", "dnd", "offline"]
    guild_id: int | None = None
    user_id: int | None = None


class InvalidSessionRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    resumable: bool = False


class CloseRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: int = msgspec.field(default=4000)
    reason: str = "closed by the simulator's control API"


class SharedRateLimit(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    method: str
    route: str  # the path template under /api/v10, as "/channels/{channel_id}/messages"
    retry_after: Annotated[float, msgspec.Meta(gt=0, le=60)]


class NewGuilds(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_NEW_GUILDS)] = 1


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Control:
    def __init__(
        self,
        world: World,
        payloads: PayloadFactory,
        gateway: Gateway,
        messages: MessageLog,
        traffic: TrafficGenerator,
        stats: Stats,
        rest: RestApi,
    ) -> None:
        self.rest = rest
        self.world = world
        self.payloads = payloads
        self.gateway = gateway
        self.messages = messages
        self.traffic = traffic
        self.stats = stats
        # Picks the guild, channel and author an injection leaves out; seeded for repeatability.
        self._random = random.Random(world.seed)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/stats", self.get_stats),
            web.get("/_sim/world", self.get_world),
            web.get("/_sim/guilds/{guild_id}", self.get_guild),
            web.get("/_sim/sessions", self.get_sessions),
            web.get("/_sim/dispatches", self.get_dispatches),
            web.post("/_sim/messages", self.inject_message),
            web.get("/_sim/messages", self.list_messages),
            web.post("/_sim/interactions", self.inject_interaction),
            web.post("/_sim/presences", self.inject_presence),
            web.post("/_sim/shards/{shard_id}/reconnect", self.force_reconnect),
            web.post("/_sim/shards/{shard_id}/invalid-session", self.force_invalid_session),
            web.post("/_sim/shards/{shard_id}/drop", self.force_drop),
            web.post("/_sim/shards/{shard_id}/close", self.force_close),
            web.post("/_sim/guilds", self.add_guilds),
            web.delete("/_sim/guilds/{guild_id}", self.remove_guild),
            web.post("/_sim/traffic/start", self.start_traffic),
            web.post("/_sim/traffic/stop", self.stop_traffic),
            web.get("/_sim/traffic", self.get_traffic),
            web.post("/_sim/ratelimits/shared", self.force_shared_429),
        ]

    @web.middleware
    async def errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except BadRequest as error:
            return error_response(error.status, str(error))
        return response

    # -- reading ---------------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        self.stats.sessions_active = self.gateway.sessions.connected()
        return json_response(self.stats.as_json())

    async def get_guild(self, request: web.Request) -> web.Response:
        """Who is in a guild and who may manage it: its owner, members and moderators."""
        guild_id = self._path_int(request, "guild_id")
        if not self.world.has_guild(guild_id):
            raise BadRequest(404, f"no guild {guild_id}")
        guild = self.world.guild(guild_id)
        return json_response(
            {
                "id": guild.id,
                "owner_id": guild.owner_id,
                "member_ids": guild.member_ids,
                "moderator_ids": [
                    user for user in guild.member_ids[1:] if self.payloads.is_moderator(guild, user)
                ],
            }
        )

    async def get_world(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "seed": self.world.seed,
                "guild_count": len(self.world.guild_ids),
                "guild_ids": self.world.guild_ids,
                "bot_id": self.world.bot_id,
                "user_count": self.world.user_count,
            }
        )

    async def get_sessions(self, request: web.Request) -> web.Response:
        connections = {
            connection.session.session_id: connection
            for connection in self.gateway.connections
            if connection.session is not None
        }
        sessions = []
        for session in self.gateway.sessions:
            connection = connections.get(session.session_id)
            sessions.append(
                {
                    "session_id": session.session_id,
                    "shard_id": session.shard_id,
                    "shard_count": session.shard_count,
                    "seq": session.seq,
                    "connected": session.outbox is not None,
                    "compression": connection.compression if connection else None,
                    "guilds": len(session.guild_ids),
                    "intents": session.intents,
                }
            )
        return json_response(sessions)

    async def get_dispatches(self, request: web.Request) -> web.Response:
        """What the hub routed for one guild, or for all, by the shard count it reached."""
        guild_id = self._query_int(request, "guild_id")
        if guild_id is None:
            totals = self.stats.dispatches_by_shard_count
            return json_response(
                {
                    "by_shard_count": {str(count): n for count, n in sorted(totals.items())},
                    "guilds": len(self.gateway.tally),
                }
            )
        counts = self.gateway.tally.of_guild(guild_id)
        if counts is None:
            if not self.world.has_guild(guild_id):
                raise BadRequest(404, f"no guild {guild_id}")
            counts = {}
        return json_response(
            {
                "guild_id": guild_id,
                "by_shard_count": {str(count): n for count, n in sorted(counts.items())},
            }
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        channel_id = self._query_int(request, "channel_id")
        after = self._query_int(request, "after")
        return json_response(self.messages.listing(channel_id, after))

    # -- what users do ---------------------------------------------------------------------

    async def inject_message(self, request: web.Request) -> web.Response:
        body = await self._body(request, InjectedMessage)
        guild, channel_id, author_id = self._place(body.guild_id, body.channel_id, body.author_id)
        message = self.messages.post(channel_id, author_id, body.content)
        return json_response(
            {
                "id": int(message["id"]),
                "guild_id": guild.id,
                "channel_id": channel_id,
                "author_id": author_id,
            }
        )

    async def inject_presence(self, request: web.Request) -> web.Response:
        body = await self._body(request, InjectedPresence)
        guild, _, user_id = self._place(body.guild_id, None, body.user_id)
        payload = self.payloads.presence_update(guild, user_id, body.status)
        reached = self.gateway.dispatch(guild.id, "PRESENCE_UPDATE", payload)
        return json_response({"guild_id": guild.id, "user_id": user_id, "sessions": reached})

    async def inject_interaction(self, request: web.Request) -> web.Response:
        body = await self._body(request, InjectedInteraction)
        guild, channel_id, user_id = self._place(body.guild_id, body.channel_id, body.user_id)
        interaction = self.messages.interact(channel_id, user_id, body.command, body.options)
        return json_response(
            {
                "id": interaction.id,
                "token": interaction.token,
                "guild_id": guild.id,
                "channel_id": channel_id,
            }
        )

    # -- what Discord does to a shard ----------------------------------------------------------

    async def force_reconnect(self, request: web.Request) -> web.Response:
        connections = self._connections(request)
        for connection in connections:
            connection.send_op(Op.RECONNECT, None)
        return json_response({"connections": len(connections)})

    async def force_invalid_session(self, request: web.Request) -> web.Response:
        connections = self._connections(request)
        body = await self._body(request, InvalidSessionRequest, empty_ok=True)
        for connection in connections:
            connection.invalidate_session(resumable=body.resumable)
        return json_response({"connections": len(connections)})

    async def force_drop(self, request: web.Request) -> web.Response:
        connections = self._connections(request)
        for connection in connections:
            connection.drop()
        return json_response({"connections": len(connections)})

    async def force_close(self, request: web.Request) -> web.Response:
        connections = self._connections(request)
        body = await self._body(request, CloseRequest, empty_ok=True)
        if not (body.code == 1000 or 3000 <= body.code <= 4999):
            raise BadRequest(400, f"close code {body.code} is not 1000 or in 3000-4999")
        for connection in connections:
            await connection.close(body.code, body.reason)
        return json_response({"connections": len(connections)})

    # -- what Discord does to a REST route -----------------------------------------------------

    async def force_shared_429(self, request: web.Request) -> web.Response:
        body = await self._body(request, SharedRateLimit)
        if body.method not in hdrs.METH_ALL:
            raise BadRequest(400, f"method {body.method!r} is not an HTTP method, as 'POST'")
        rest = self.rest
        if (body.method, body.route) not in rest.served:
            raise BadRequest(
                400,
                f"the REST API serves no {body.method} {body.route!r}; route is a path template"
                f" under {API_PREFIX}, as '/channels/{{channel_id}}/messages'",
            )
        rest.limiter.force_shared(body.method, body.route, body.retry_after)
        return json_response(
            {"route": body.route, "method": body.method, "until_s": body.retry_after}
        )

    # -- the world -------------------------------------------------------------------------------

    async def add_guilds(self, request: web.Request) -> web.Response:
        """``count`` guilds join: GUILD_CREATE to every session (of every shard count) on each
        one's shard, after 4011 for the sessions whose shard they take past the cap."""
        body = await self._body(request, NewGuilds, empty_ok=True)
        gateway = self.gateway
        guild_ids: list[int] = []
        reached = closed = 0
        for start in range(0, body.count, GUILDS_PER_TURN):
            if start:
                await asyncio.sleep(0)
            # A slice joins the world and is announced in one turn: a session that identifies
            # between slices has each guild in its READY or in a GUILD_CREATE, never both.
            joined = [
                self.world.add_guild() for _ in range(min(GUILDS_PER_TURN, body.count - start))
            ]
            closed += gateway.require_sharding()
            for guild_id in joined:
                payload = self.payloads.guild_create(self.world.guild(guild_id), available=False)
                reached += gateway.dispatch(guild_id, "GUILD_CREATE", payload)
            guild_ids.extend(joined)
        return json_response(
            {"id": guild_ids[0], "ids": guild_ids, "sessions": reached, "sessions_closed": closed}
        )

    async def remove_guild(self, request: web.Request) -> web.Response:
        guild_id = self._path_int(request, "guild_id")
        if not self.world.has_guild(guild_id):
            raise BadRequest(404, f"no guild {guild_id}")
        # Dispatched while the guild is still the world's, so the tally counts it.
        reached = self.gateway.dispatch(guild_id, "GUILD_DELETE", {"id": str(guild_id)})
        self.world.remove_guild(guild_id)
        return json_response({"id": guild_id, "sessions": reached})

    # -- traffic ---------------------------------------------------------------------------------

    async def start_traffic(self, request: web.Request) -> web.Response:
        spec = await self._body(request, TrafficSpec, empty_ok=True)
        try:
            self.traffic.start(spec)
        except RuntimeError as error:
            raise BadRequest(409, str(error)) from None
        return json_response(self.traffic.status())

    async def stop_traffic(self, request: web.Request) -> web.Response:
        await self.traffic.stop()
        return json_response(self.traffic.status())

    async def get_traffic(self, request: web.Request) -> web.Response:
        return json_response(self.traffic.status())

    # -- parsing -----------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request, kind: type[Body], *, empty_ok: bool = False) -> Body:
        raw = await request.read()
        if not raw.strip() and empty_ok:
            raw = b"{}"
        try:
            return msgspec.json.decode(raw, type=kind)
        except msgspec.ValidationError as error:
            raise BadRequest(400, f"invalid {kind.__name__}: {error}") from None
        except msgspec.DecodeError as error:
            raise BadRequest(400, f"body is not valid JSON: {error}") from None

    @staticmethod
    def _path_int(request: web.Request, name: str) -> int:
        raw = request.match_info[name]
        return Control._integer(raw, name)

    @staticmethod
    def _integer(raw: str, name: str) -> int:
        if not (raw.isascii() and raw.isdigit()):
            raise BadRequest(400, f"{name} must be a non-negative integer, got {raw!r}")
        return int(raw)

    @staticmethod
    def _query_int(request: web.Request, name: str) -> int | None:
        raw = request.query.get(name)
        return None if raw is None else Control._integer(raw, name)

    def _connections(self, request: web.Request) -> list[GatewayConnection]:
        shard_id = self._path_int(request, "shard_id")
        connections = self.gateway.connections_of_shard(shard_id)
        if not connections:
            raise BadRequest(404, f"shard {shard_id} has no connected session")
        return connections

    def _place(
        self, guild_id: int | None, channel_id: int | None, user_id: int | None
    ) -> tuple[Guild, int, int]:
        """The guild, channel and member of an injection: given ones checked, others drawn."""
        if channel_id is not None:
            derived = guild_of(channel_id)
            if guild_id is not None and guild_id != derived:
                raise BadRequest(400, f"channel {channel_id} is not in guild {guild_id}")
            guild_id = derived
        if guild_id is None:
            if not self.world.guild_ids:
                raise BadRequest(409, "the world has no guilds")
            guild_id = self._random.choice(self.world.guild_ids)
        if not self.world.has_guild(guild_id):
            raise BadRequest(404, f"no guild {guild_id}")
        guild = self.world.guild(guild_id)
        if channel_id is None:
            if not guild.channel_ids:
                raise BadRequest(409, f"guild {guild_id} has no channels")
            channel_id = self._random.choice(guild.channel_ids)
        elif channel_id not in guild.channel_ids:
            raise BadRequest(404, f"no channel {channel_id} in guild {guild_id}")
        humans = guild.member_ids[1:]
        if user_id is None:
            if not humans:
                raise BadRequest(409, f"guild {guild_id} has no members but the bot")
            user_id = self._random.choice(humans)
        elif user_id not in guild.member_ids:
            raise BadRequest(404, f"user {user_id} is not a member of guild {guild_id}")
        return guild, channel_id, user_id
