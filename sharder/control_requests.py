"""What travels on the control socket: the requests, their validation, and the answers' shape.

Each connection carries one request line and one answer line, both JSON objects:

- ``{"command": "status"}`` -> ``{"ok": true, "status": <SharderStatus>}``
- ``{"command": "stop"}`` -> ``{"ok": true, "message": "stopping"}``
- ``{"command": "restart", "worker": 3}`` -> ``{"ok": true, "message": "..."}``
- ``{"command": "restart", "rolling": true}`` -> ``{"ok": true, "message": "..."}``: every
  worker in turn; the status's ``roll`` follows it
- ``{"command": "move", "shard": 5, "worker": 2}`` -> ``{"ok": true, "message": "..."}``: the
  shard's session handed to the worker; the status's ``move`` follows it
- ``{"command": "reshard", "shards": 8}`` (``null``: Discord's recommendation) ->
  ``{"ok": true, "message": "..."}``: the status's ``reshard`` follows it
- ``{"command": "state_get", "scope": "guild_config", "key": "<guild id>"}`` ->
  ``{"ok": true, "value": <the merged value, null if never written>}``
- ``{"command": "state_set", "scope": "guild_config", "key": "<guild id>", "fields": {...}}`` ->
  ``{"ok": true, "version": <the key's new version>}`` (``guild_config`` and ``user_data`` only)

Anything the server cannot carry out is answered ``{"ok": false, "error": "<why>"}``. Apart from
the server (``control_server``) and what the commands do (``control_commands``): a new command
or field changes this module, and the socket's handling does not.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from protocol.framing import too_deep
from protocol.messages import StateScope
from sharder.config import describe

MAX_REQUEST_BYTES = 64 * 1024
MAX_SHARDS = 100_000  # far past any bot's: a count that would only exhaust the session budget


class Request(msgspec.Struct, tag_field="command", forbid_unknown_fields=True):
    """Base of the requests; the tag field ``command`` says which one."""


class StatusRequest(Request, tag="status"):
    pass


class StopRequest(Request, tag="stop"):
    pass


class RestartRequest(Request, tag="restart"):
    worker: Annotated[int, msgspec.Meta(ge=0)] | None = None
    rolling: bool = False


class MoveRequest(Request, tag="move"):
    shard: Annotated[int, msgspec.Meta(ge=0)]
    worker: Annotated[int, msgspec.Meta(ge=0)]


class ReshardRequest(Request, tag="reshard"):
    shards: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHARDS)] | None = None


class StateGetRequest(Request, tag="state_get"):
    scope: StateScope
    key: str


class StateSetRequest(Request, tag="state_set"):
    scope: StateScope
    key: str
    fields: dict[str, Any]


AnyRequest = (
    StatusRequest
    | StopRequest
    | RestartRequest
    | MoveRequest
    | ReshardRequest
    | StateGetRequest
    | StateSetRequest
)
COMMANDS = ("status", "stop", "restart", "move", "reshard", "state_get", "state_set")


class BadRequest(Exception):
    """A request line the server cannot parse; the message is the answer's error."""


def parse_request(line: bytes) -> AnyRequest:
    """The request on ``line``, or ``BadRequest`` saying what is wrong with it."""
    try:
        document = msgspec.json.decode(line)
    except msgspec.DecodeError as error:
        raise BadRequest(f"request is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(f"request is not valid JSON: {too_deep(len(line))}") from None
    if not isinstance(document, dict):
        raise BadRequest('a request is a JSON object, e.g. {"command": "status"}')
    command = document.get("command")
    if command is None:
        raise BadRequest(f'request has no "command"; commands are {", ".join(COMMANDS)}')
    if command not in COMMANDS:
        shown = msgspec.json.encode(command).decode()
        raise BadRequest(f"unknown command {shown}; commands are {', '.join(COMMANDS)}")
    try:
        request: AnyRequest = msgspec.convert(document, AnyRequest)
    except msgspec.ValidationError as error:
        raise BadRequest(f"bad {command} request: {describe(error)}") from None
    if isinstance(request, RestartRequest) and (request.worker is None) == (not request.rolling):
        raise BadRequest('bad restart request: give either "worker" or "rolling": true')
    return request


def error_answer(message: str) -> dict[str, object]:
    """The answer to a request that was not carried out."""
    return {"ok": False, "error": message}
