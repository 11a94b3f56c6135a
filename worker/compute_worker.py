"""The compute worker process: CPU tasks from the master, one at a time, within limits.

Lifecycle (started by ``child.runtime``): process limits set, hello with the master, the bot's own
tasks registered (``[compute].entry_point``, called with a ``ComputeTasks``); then it runs what
the master sends. A task runs on the process's only thread, sealed by the sandbox: the master
sends one task at a time, stops pinging while it runs, and kills the process if it passes its
deadline. The link's end (the master stopping, or gone) ends the process.

Tasks: ``math`` (``{"expression": str}`` -> the value as text), ``jumbo`` (``{"text": str}``
-> an image of the emoji in the text) and any registered ``name`` (``args`` -> a msgpack-able
value).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing.connection
import sys
from collections.abc import Callable
from typing import Any

from PIL import Image

from child.link import MasterLink
from protocol import AnyMessage, FrameTooLarge
from protocol.messages import (
    ComputeRequest,
    ComputeResult,
    ErrorCode,
    Heartbeat,
    ReplyError,
)
from worker import compute_math
from worker.compute_sandbox import Sandbox
from worker.emoji_compose import compose
from worker.emoji_fetch import EmojiFetcher, EmojiSources, fetch_emoji_images
from worker.emoji_text import EmojiError
from worker.entry_points import load_entry_point
from worker.spec import ComputeSpec

log = logging.getLogger("worker.compute")

Task = Callable[[dict[str, Any]], Any]
BUILT_IN = ("math", "jumbo")


class TaskRefused(ValueError):
    """A task's arguments are not what it takes; the message says what is wrong."""


class UnknownTask(LookupError):
    """No task of that name: neither built in nor registered."""


class ComputeTasks:
    """The bot's own compute tasks, by name: plain functions of their ``args``."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}

    def task(self, name: str) -> Callable[[Task], Task]:
        def register(function: Task) -> Task:
            if name in BUILT_IN or name in self.tasks:
                raise ValueError(f"a compute task named {name!r} already exists")
            self.tasks[name] = function
            return function

        return register


async def serve(spec: ComputeSpec, pipe: multiprocessing.connection.Connection) -> int:
    """The process's entry (run by ``child.runtime``): tasks until the link ends."""
    # Our priority was lowered by the master as we started (sharder.kinds.lower_priority).
    # Math results may have MAX_DIGITS digits; str() of an int refuses more than 4,300 by default.
    sys.set_int_max_str_digits(compute_math.MAX_DIGITS + 1)
    # Everything slow before the hello: after it, heartbeats must be answered.
    registry = ComputeTasks()
    if spec.entry_point:
        load_entry_point(spec.entry_point)(registry)
    Image.init()  # every image plugin now: a sealed task cannot import one later
    sandbox = Sandbox()
    sandbox.limit_process(spec.memory_bytes)
    sandbox.install()
    link = await MasterLink.open(pipe, "compute_worker", spec.compute_id)
    return await ComputeWorker(spec, registry, sandbox, link).run()


class ComputeWorker:
    def __init__(
        self, spec: ComputeSpec, registry: ComputeTasks, sandbox: Sandbox, link: MasterLink
    ) -> None:
        self.spec = spec
        self.registry = registry
        self.sandbox = sandbox
        self.link = link
        self.loop = asyncio.get_running_loop()
        self.fetcher = EmojiFetcher(
            EmojiSources(
                custom_base=spec.custom_emoji_url,
                unicode_base=spec.unicode_emoji_url,
                timeout=spec.emoji_timeout,
                max_bytes=spec.emoji_max_bytes,
            ),
            cache_bytes=spec.emoji_cache_bytes,
        )
        self._running: asyncio.Task[None] | None = None

    async def run(self) -> int:
        try:
            await self.link.serve(self._dispatch)
        finally:
            await self.fetcher.close()
        return 0

    def _dispatch(self, message: AnyMessage) -> None:
        if isinstance(message, Heartbeat):
            self.link.acknowledge(message)
        elif isinstance(message, ComputeRequest):
            if self._running is not None:
                self._refuse(message.nonce, "busy", "this compute worker is running a task")
                return
            self._running = self.loop.create_task(self._run(message))
        else:
            log.warning("unexpected %s from the master ignored", type(message).__name__)

    async def _run(self, request: ComputeRequest) -> None:
        try:
            self.sandbox.arm_cpu_limit(self.spec.cpu_seconds)
            result = await self._perform(request)
        except (TaskRefused, compute_math.MathError, EmojiError) as refusal:
            self._refuse(request.nonce, "invalid", str(refusal))
        except UnknownTask as unknown:
            self._refuse(request.nonce, "no_handler", str(unknown))
        except MemoryError:
            limit = self.spec.memory_bytes // (1024 * 1024)
            self._refuse(request.nonce, "handler_failed", f"out of memory (limit {limit} MiB)")
        except Exception as error:
            self._refuse(request.nonce, "handler_failed", f"{type(error).__name__}: {error}")
        else:
            try:
                self.link.connection.send_soon(result)
            except (TypeError, ValueError, FrameTooLarge) as error:
                self._refuse(request.nonce, "handler_failed", f"the result cannot be sent: {error}")
        finally:
            self._running = None

    async def _perform(self, request: ComputeRequest) -> ComputeResult:
        nonce, args = request.nonce, request.args
        if request.task == "math":
            expression = text_argument(args, "expression")
            with self.sandbox.sealed():
                number = compute_math.evaluate(expression)
            return ComputeResult(nonce=nonce, value=compute_math.format_number(number))
        if request.task == "jumbo":
            refs, images = await fetch_emoji_images(
                text_argument(args, "text"), self.fetcher, self.spec.max_emoji
            )
            with self.sandbox.sealed():
                image = compose(images, self.spec.jumbo_height)
            value = {
                "width": image.width,
                "height": image.height,
                "frames": image.frames,
                "emoji": [ref.name for ref in refs],
            }
            return ComputeResult(
                nonce=nonce, value=value, data=image.data, content_type=image.content_type
            )
        function = self.registry.tasks.get(request.task)
        if function is None:
            raise UnknownTask(f"no compute task named {request.task!r}")
        with self.sandbox.sealed():
            value = function(args)
        return ComputeResult(nonce=nonce, value=value)

    def _refuse(self, nonce: int, code: ErrorCode, message: str) -> None:
        self.link.send(ReplyError(nonce=nonce, code=code, message=message))


def text_argument(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise TaskRefused(f"the task needs {name!r} as text")
    return value
