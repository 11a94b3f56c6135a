"""Messages and interactions: what users and the bot say, and where it is dispatched.

Every message, whether a user's (injected or from traffic) or the bot's (through REST), becomes a
MESSAGE_CREATE on the shard that owns its guild, as on Discord. The bot's messages are kept in
full, with their attachments, for tests to read back; users' messages only while recent, so that
replies can reference them and long traffic runs stay bounded in memory.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from simulator.gateway.hub import Gateway
from simulator.payloads import Payload, PayloadFactory, SnowflakeFactory, command_id, now_iso
from simulator.stats import Stats
from simulator.world import World, guild_of

RECENT = 100_000  # user messages and interactions kept for references and callbacks


class UnknownChannel(LookupError):
    pass


class UnknownMessage(LookupError):
    pass


class UnknownInteraction(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Interaction:
    id: int
    token: str
    channel_id: int
    user_id: int
    acknowledged: bool = False
    original_message_id: int | None = None


@dataclass(slots=True)
class BotMessage:
    payload: Payload
    attachments: list[Attachment] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        payload = self.payload
        return {
            "id": int(payload["id"]),
            "guild_id": int(payload["guild_id"]),
            "channel_id": int(payload["channel_id"]),
            "content": payload["content"],
            "attachments": payload["attachments"],
            "embeds": payload["embeds"],
            "message_reference": payload.get("message_reference"),
            "interaction_id": payload.get("interaction_metadata", {}).get("id"),
        }


class MessageLog:
    def __init__(
        self,
        world: World,
        payloads: PayloadFactory,
        gateway: Gateway,
        stats: Stats,
        snowflakes: SnowflakeFactory,
        attachment_url: str = "",
    ) -> None:
        self.world = world
        self.payloads = payloads
        self.gateway = gateway
        self.stats = stats
        self.snowflakes = snowflakes
        self.attachment_url = attachment_url  # http://HOST:PORT/attachments, set once bound
        self.bot_messages: OrderedDict[int, BotMessage] = OrderedDict()
        # Encoded: a hundred thousand payloads as dicts would be millions of objects for the
        # garbage collector to walk, which halved the dispatch rate.
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self.interactions: OrderedDict[str, Interaction] = OrderedDict()  # by token
        self._bot_nonces: dict[tuple[int, int | str], int] = {}
        self._interaction_tokens = itertools.count(1)

    def check_channel(self, channel_id: int) -> None:
        guild_id = guild_of(channel_id)
        if (
            not self.world.has_guild(guild_id)
            or channel_id not in self.world.guild(guild_id).channel_ids
        ):
            raise UnknownChannel(channel_id)

    def get(self, channel_id: int, message_id: int) -> Payload:
        found = self.bot_messages.get(message_id)
        if found is not None:
            payload: Payload | None = found.payload
        else:
            encoded = self._recent.get(message_id)
            payload = None if encoded is None else msgspec.json.decode(encoded)
        if payload is None or int(payload["channel_id"]) != channel_id:
            raise UnknownMessage(message_id)
        return payload

    def by_nonce(self, channel_id: int, nonce: int | str) -> Payload | None:
        """The bot's message in a channel with this nonce: a retried POST that already landed."""
        message_id = self._bot_nonces.get((channel_id, nonce))
        return None if message_id is None else self.bot_messages[message_id].payload

    def post(
        self,
        channel_id: int,
        author_id: int,
        content: str,
        *,
        embeds: list[Payload] | None = None,
        attachments: list[Attachment] | None = None,
        reference: Payload | None = None,
        interaction: Interaction | None = None,
        nonce: int | str | None = None,
    ) -> Payload:
        """Create a message and dispatch it as MESSAGE_CREATE to its guild's shard."""
        self.check_channel(channel_id)
        message_id = self.snowflakes.next()
        files = attachments or []
        payload = self.payloads.message(
            message_id=message_id,
            channel_id=channel_id,
            author_id=author_id,
            content=content,
            embeds=embeds,
            attachments=[self._attachment_payload(channel_id, file) for file in files],
            message_reference=reference,
        )
        if interaction is not None:
            payload["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": 2,
                "user": self.payloads.user(interaction.user_id),
                "authorizing_integration_owners": {"0": str(guild_of(channel_id))},
            }
        if nonce is not None:
            payload["nonce"] = nonce
        if author_id == self.world.bot_id:
            self.stats.bot_messages += 1
            self.bot_messages[message_id] = BotMessage(payload, files)
            if nonce is not None:
                self._bot_nonces[(channel_id, nonce)] = message_id
        else:
            self.stats.user_messages += 1
            self._recent[message_id] = msgspec.json.encode(payload)
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        self.gateway.dispatch(guild_of(channel_id), "MESSAGE_CREATE", payload)
        return payload

    def edit(self, message_id: int, content: str | None, embeds: list[Payload] | None) -> Payload:
        found = self.bot_messages.get(message_id)
        if found is None:
            raise UnknownMessage(message_id)
        payload = found.payload
        if content is not None:
            payload["content"] = content
        if embeds is not None:
            payload["embeds"] = embeds
        payload["edited_timestamp"] = now_iso()
        self.gateway.dispatch(int(payload["guild_id"]), "MESSAGE_UPDATE", payload)
        return payload

    def attachment(self, attachment_id: int) -> Attachment | None:
        for message in reversed(self.bot_messages.values()):
            for file in message.attachments:
                if file.id == attachment_id:
                    return file
        return None

    def listing(
        self, channel_id: int | None = None, after: int | None = None
    ) -> list[dict[str, Any]]:
        return [
            message.summary()
            for message_id, message in self.bot_messages.items()
            if (channel_id is None or int(message.payload["channel_id"]) == channel_id)
            and (after is None or message_id > after)
        ]

    # -- interactions ------------------------------------------------------------------------

    def interact(
        self, channel_id: int, user_id: int, command_name: str, options: list[Payload]
    ) -> Interaction:
        """A user runs a slash command: INTERACTION_CREATE to the guild's shard."""
        self.check_channel(channel_id)
        interaction = Interaction(
            id=self.snowflakes.next(),
            token=f"sim-interaction-{next(self._interaction_tokens)}",
            channel_id=channel_id,
            user_id=user_id,
        )
        self.interactions[interaction.token] = interaction
        if len(self.interactions) > RECENT:
            self.interactions.popitem(last=False)
        self.stats.interactions += 1
        payload = self.payloads.interaction(
            interaction_id=interaction.id,
            token=interaction.token,
            channel_id=channel_id,
            user_id=user_id,
            command_name=command_name,
            command_id=command_id(self.world.bot_id, command_name),
            options=options,
        )
        self.gateway.dispatch(guild_of(channel_id), "INTERACTION_CREATE", payload)
        return interaction

    def interaction(self, token: str) -> Interaction:
        try:
            return self.interactions[token]
        except KeyError:
            raise UnknownInteraction(token) from None

    def _attachment_payload(self, channel_id: int, file: Attachment) -> Payload:
        url = f"{self.attachment_url}/{channel_id}/{file.id}/{file.filename}"
        return {
            "id": str(file.id),
            "filename": file.filename,
            "size": len(file.data),
            "url": url,
            "proxy_url": url,
            "content_type": file.content_type,
        }
