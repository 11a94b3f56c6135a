"""``ctx.compute``: CPU work sent to the compute pool instead of run on the shard's event loop.

Each call goes to the master, which runs it on an idle compute worker or queues it; it fails
with ``RequestError`` (``invalid`` for a refused input, ``timeout`` past its deadline, ``busy``
when the pool's queue is full, ``target_down`` when no compute worker runs) and never hangs.

    result = await ctx.compute.math("sqrt(2) * 10")      # "14.142135623730951"
    image = await ctx.compute.jumbo("<:blob:123456789012345678> 🎉")
    await event.message.respond(attachment=hikari.Bytes(image.data, image.filename))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from child.link import MasterLink, RequestError
from protocol.messages import ComputeRequest, ComputeResult, deadline_in


@dataclass(frozen=True, slots=True)
class JumboImage:
    """Emoji enlarged and side by side: a PNG, or a GIF when one of them is animated."""

    data: bytes
    content_type: str
    width: int
    height: int
    frames: int
    emoji: list[str]  # the names of the emoji, in order

    @property
    def filename(self) -> str:
        return "jumbo.gif" if self.content_type == "image/gif" else "jumbo.png"


class JumboValue(msgspec.Struct):
    width: int
    height: int
    frames: int
    emoji: list[str]


class ComputeClient:
    def __init__(self, link: MasterLink, default_timeout: float) -> None:
        self._link = link
        self.default_timeout = default_timeout

    async def math(self, expression: str, *, timeout: float | None = None) -> str:
        """The value of ``expression`` as text (every digit of an integer result)."""
        result = await self.run_task("math", {"expression": expression}, timeout=timeout)
        if not isinstance(result.value, str):
            raise RequestError("handler_failed", "the math task answered no text")
        return result.value

    async def jumbo(self, text: str, *, timeout: float | None = None) -> JumboImage:
        """The emoji in ``text``, enlarged and composed into one image."""
        result = await self.run_task("jumbo", {"text": text}, timeout=timeout)
        if result.data is None or result.content_type is None:
            raise RequestError("handler_failed", "the jumbo task answered no image")
        try:
            value = msgspec.convert(result.value, JumboValue)
        except msgspec.ValidationError as error:
            raise RequestError("handler_failed", f"the jumbo task answered: {error}") from None
        return JumboImage(
            result.data, result.content_type, value.width, value.height, value.frames, value.emoji
        )

    async def run(self, task: str, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Run a compute task the bot registered (``[compute].entry_point``); its value."""
        return (await self.run_task(task, args, timeout=timeout)).value

    async def run_task(
        self, task: str, args: dict[str, Any], *, timeout: float | None = None
    ) -> ComputeResult:
        request = ComputeRequest(
            nonce=self._link.next_nonce(),
            deadline=deadline_in(timeout or self.default_timeout),
            task=task,
            args=args,
        )
        result: ComputeResult = await self._link.call(request)
        return result
