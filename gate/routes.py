"""What a REST request is limited as: its route (method and path with ids as placeholders) and
its *major parameter*, as Discord keys its buckets; and the path as logs may show it.

Kept apart from the limits: this is Discord's naming of requests, which changes with the API's
paths, while the limits change with Discord's rate-limit rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAJOR_RESOURCES = ("channels", "guilds", "webhooks", "interactions")
TOKEN_AFTER = ("webhooks", "interactions")  # their second segment is a token, part of the major
# Every table keyed by route is bounded: templates (ids, tokens and emoji as placeholders) up to
# this many, past it the rest are counted together or share a bucket per template.
MAX_ROUTES = 200
_ID = re.compile(r"^[0-9]{1,20}$")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # "/channels/{channel_id}/messages/{id}"
    major: str  # "channels/123", "" for none

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def exempt_from_global(self) -> bool:
        return self.template.startswith("/interactions/")


def redacted(path: str) -> str:
    """``path`` with its webhook or interaction token replaced, as logs may show it."""
    segments = path.split("/")
    for index, segment in enumerate(segments[:-2]):
        if segment in TOKEN_AFTER:
            segments[index + 2] = "{token}"
    return "/".join(segments)


def route_of(method: str, path: str) -> Route:
    """The route of a request path below the API base (``/channels/123/messages``)."""
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    template: list[str] = []
    major = ""
    for index, segment in enumerate(segments):
        previous = segments[index - 1] if index else ""
        if index == 1 and previous in MAJOR_RESOURCES and _ID.match(segment):
            major = f"{previous}/{segment}"
            template.append("{" + previous.removesuffix("s") + "_id}")
        elif index == 2 and segments[0] in TOKEN_AFTER:
            major = f"{major}/{segment}"  # webhook and interaction tokens are majors too
            template.append("{token}")
        elif previous == "reactions":
            template.append("{emoji}")
        elif _ID.match(segment):
            template.append("{id}")
        else:
            template.append(segment)
    return Route(method.upper(), "/" + "/".join(template), major)
