"""JSON responses in Discord's shape, shared by the REST API, the CDN and the control routes,
and the type of the handlers that answer with them (their middlewares take one).

The content type is exactly ``application/json``: discord.py compares the header verbatim, so
aiohttp's ``; charset=utf-8`` suffix would make it treat bodies as text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import msgspec
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

encode = msgspec.json.Encoder().encode


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encode(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, message: str, code: int = 0, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Discord's error body: ``{"message", "code"}`` with a JSON error code (0: general)."""
    return json_response({"message": message, "code": code}, status, headers)
