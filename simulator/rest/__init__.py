"""The simulated REST API under ``/api/v10``: the calls a bot makes, checked and rate limited.

Every call but the interaction and webhook ones (which carry their own token in the path, as on
Discord) needs ``Authorization: Bot TOKEN``. Every response carries the rate limit headers of
its bucket; a call over a bucket or the global limit, or to a route the control API forced into
a shared 429, gets a 429 with ``retry_after`` and ``global`` in its body and the limit's
``X-RateLimit-Scope``. Errors use Discord's JSON error codes.

``api`` assembles the application from the ``guard`` every call passes and one module of routes
per resource: ``account`` (the gateway, users, the application), ``guilds`` (guilds, members,
roles, emoji), ``channels`` (channels and their messages), ``interactions`` (callbacks and
their webhooks) and ``commands`` (application commands). ``bot_messages`` checks and writes
what the bot posts, for channels and interactions alike; ``params`` reads requests and
``errors`` holds Discord's error codes.
"""

API_PREFIX = "/api/v10"
MAX_REQUEST_SIZE = 25 * 1024 * 1024  # Discord's attachment limit for bots
