"""Invalid requests over Discord's ban window: what keeps the bot's IP from being banned.

Discord bans an IP for a while once it sends ``limit`` invalid requests (401, 403, and 429s
that are not ``shared``) within ten minutes. Past ``slowdown_at`` of that count the gate sends
at a fifth of its global rate (``GlobalLimit`` asks ``slowed``), past ``refuse_at`` it refuses
requests until the count falls.
"""

from __future__ import annotations

from collections import deque

from gate.waiting import GateRefusal

INVALID_STATUSES = frozenset({401, 403, 429})
BAN_WINDOW = 600.0  # Discord counts invalid requests over ten minutes


def is_invalid(status: int, scope: str) -> bool:
    """Whether Discord counts an answer towards a ban: a shared 429 is the route's, not ours."""
    return status in INVALID_STATUSES and not (status == 429 and scope == "shared")


class InvalidRequests:
    def __init__(self, limit: int, slowdown_at: float, refuse_at: float) -> None:
        self.limit = limit
        self.slowdown_at = slowdown_at
        self.refuse_at = refuse_at
        self._at: deque[float] = deque()  # when each one was answered, oldest first

    def record(self, now: float) -> None:
        self._at.append(now)

    def count(self, now: float) -> int:
        at = self._at
        while at and now - at[0] > BAN_WINDOW:
            at.popleft()
        return len(at)

    def slowed(self, now: float) -> bool:
        return self.count(now) >= self.slowdown_at * self.limit

    def check(self, now: float) -> None:
        """``GateRefusal`` once a ban is near: one more invalid request would risk it."""
        count = self.count(now)
        if count >= self.refuse_at * self.limit:
            raise GateRefusal(
                f"{count} invalid requests (401, 403, 429) in the last 10 minutes; Discord bans "
                f"at {self.limit}: the gate refuses requests until the count falls"
            )
