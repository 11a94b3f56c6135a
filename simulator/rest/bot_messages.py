"""The bot's messages as REST writes them: the body read, checked as Discord checks it, then
posted or edited in the message log.

Channel routes and interaction routes (responses, followups, ``@original``) both post messages,
with the same limits and errors; they share this one writer so the two cannot drift apart.
"""

from __future__ import annotations

import msgspec
from aiohttp import BodyPartReader, hdrs, web

from simulator.messages import Attachment, Interaction, MessageLog, UnknownMessage
from simulator.payloads import Payload, SnowflakeFactory
from simulator.rest.errors import EMPTY_MESSAGE, INVALID_JSON, UNKNOWN_MESSAGE, ApiError
from simulator.rest.params import decode, parse_snowflake, read_json
from simulator.world import World, guild_of

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_NONCE = 25


class BotMessages:
    def __init__(self, world: World, messages: MessageLog, snowflakes: SnowflakeFactory) -> None:
        self.world = world
        self.messages = messages
        self.snowflakes = snowflakes

    async def read_body(self, request: web.Request) -> tuple[Payload, list[Attachment]]:
        """A JSON body, or multipart with ``payload_json`` and ``files[n]`` parts."""
        files: list[Attachment] = []
        if request.content_type != "multipart/form-data":
            body = await read_json(request)
        else:
            body = {}
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    try:
                        body = decode(await part.read())
                    except msgspec.DecodeError:
                        raise ApiError(
                            400, "payload_json is not valid JSON.", INVALID_JSON
                        ) from None
                elif part.name is not None and part.name.startswith("files["):
                    content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                    files.append(
                        Attachment(
                            id=self.snowflakes.next(),
                            filename=part.filename or "file",
                            content_type=content_type,
                            data=bytes(await part.read(decode=True)),
                        )
                    )
        if not isinstance(body, dict):
            raise ApiError.invalid_field("_root", "Must be a JSON object.")
        return body, files

    def post(
        self,
        channel_id: int,
        body: Payload,
        files: list[Attachment],
        interaction: Interaction | None = None,
    ) -> Payload:
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        if not isinstance(content, str) or len(content) > MAX_CONTENT:
            raise ApiError.invalid_field("content", f"Must be a string of {MAX_CONTENT} or fewer.")
        if not isinstance(embeds, list) or len(embeds) > MAX_EMBEDS:
            raise ApiError.invalid_field("embeds", f"Must be a list of {MAX_EMBEDS} or fewer.")
        if not (content or embeds or files):
            raise ApiError(400, "Cannot send an empty message", EMPTY_MESSAGE)
        nonce = body.get("nonce")
        if nonce is not None and not (
            (type(nonce) is int) or (isinstance(nonce, str) and len(nonce) <= MAX_NONCE)
        ):
            raise ApiError.invalid_field(
                "nonce", f"Must be an integer or a string of {MAX_NONCE} or fewer."
            )
        if nonce is not None and body.get("enforce_nonce"):
            # Discord answers a retry with the message the first attempt created.
            existing = self.messages.by_nonce(channel_id, nonce)
            if existing is not None:
                return existing
        reference = self._reference(channel_id, body.get("message_reference"))
        return self.messages.post(
            channel_id,
            self.world.bot_id,
            content,
            embeds=embeds,
            attachments=files,
            reference=reference,
            interaction=interaction,
            nonce=nonce,
        )

    def edit(self, message_id: int, body: Payload) -> Payload:
        content = body.get("content")
        if content is not None and (not isinstance(content, str) or len(content) > MAX_CONTENT):
            raise ApiError.invalid_field("content", f"Must be a string of {MAX_CONTENT} or fewer.")
        try:
            return self.messages.edit(message_id, content, body.get("embeds"))
        except UnknownMessage:
            raise ApiError(404, "Unknown Message", UNKNOWN_MESSAGE) from None

    def _reference(self, channel_id: int, reference: object) -> Payload | None:
        if reference is None:
            return None
        if not isinstance(reference, dict) or "message_id" not in reference:
            raise ApiError.invalid_field("message_reference", "Must name a message_id.")
        message_id = parse_snowflake(reference["message_id"], "message_reference.message_id")
        reference_channel = parse_snowflake(
            reference.get("channel_id", channel_id), "message_reference.channel_id"
        )
        try:
            self.messages.get(reference_channel, message_id)
        except UnknownMessage:
            if reference.get("fail_if_not_exists", True):
                raise ApiError.invalid_field("message_reference", "Unknown message") from None
            return None
        return {
            "type": 0,
            "message_id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(guild_of(channel_id)),
        }
