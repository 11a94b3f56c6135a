"""The middleware every REST call passes: counted, authorized, rate limited, errors answered.

It runs before the route so that a refused call costs the route nothing, and after it so that
every answer, an error included, carries its bucket's rate limit headers, as Discord's do.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from simulator.ratelimit import RestRateLimiter
from simulator.responses import Handler, error_response, json_response
from simulator.rest import API_PREFIX
from simulator.rest.errors import ApiError
from simulator.stats import Stats


class RestGuard:
    def __init__(self, token: str, limiter: RestRateLimiter, stats: Stats) -> None:
        self.limiter = limiter
        self.stats = stats
        self._authorization = f"Bot {token}"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.stats.rest_requests += 1
        resource = request.match_info.route.resource
        template = resource.canonical.removeprefix(API_PREFIX) if resource is not None else ""
        carries_own_token = template.startswith(("/interactions/", "/webhooks/"))
        if not carries_own_token and request.headers.get(hdrs.AUTHORIZATION) != self._authorization:
            self.stats.rest_401 += 1
            return error_response(401, "401: Unauthorized")
        if request.match_info.http_exception is not None:
            error = request.match_info.http_exception
            return error_response(error.status, f"{error.status}: {error.reason}")
        verdict = self.limiter.check(
            request.method,
            template,
            dict(request.match_info),
            exempt_from_global=template.startswith("/interactions/"),
        )
        if not verdict.allowed:
            self.stats.rest_429 += 1
            self.stats.rest_global_429 += verdict.scope == "global"
            self.stats.rest_shared_429 += verdict.scope == "shared"
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(verdict.retry_after, 3),
                "global": verdict.scope == "global",
                "code": 0,
            }
            return json_response(body, 429, verdict.headers)
        try:
            response = await handler(request)
        except ApiError as error:
            response = error.response()
        response.headers.update(verdict.headers)
        return response
