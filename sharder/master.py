"""The master process: the supervisor, its control socket and its terminal, run together.

It is also the control socket's handler: ``status``, ``stop`` and ``restart WORKER`` from
``python -m sharder`` arrive here and go to the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.messages import StateScope
from sharder.control_server import ControlServer
from sharder.simulated import SimulatorChild
from sharder.state_service import StateService
from sharder.status import SharderStatus
from sharder.store import StoreError
from sharder.supervisor import Supervisor

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("sharder")


class Master:
    def __init__(
        self,
        supervisor: Supervisor,
        socket_path: Path,
        simulator: SimulatorChild | None,
        console: Console | None,
    ) -> None:
        """``console``: where the live status goes; None for none."""
        self.supervisor = supervisor
        self.socket_path = socket_path
        self.simulator = simulator
        self.console = console
        if simulator is not None:
            supervisor.on_tick = simulator.check

    def status(self) -> SharderStatus:
        return self.supervisor.status()

    async def stop(self) -> None:
        self.supervisor.request_stop()

    async def restart(self, worker_id: int) -> str:
        return await self.supervisor.restart_worker(worker_id)

    def rolling_restart(self) -> str:
        return self.supervisor.rolling_restart()

    def move_shard(self, shard_id: int, worker_id: int) -> str:
        return self.supervisor.move_shard(shard_id, worker_id)

    async def reshard(self, shard_count: int | None) -> str:
        return await self.supervisor.reshard_to(shard_count)

    def state_get(self, scope: StateScope, key: str) -> Any:
        return self._state().value(scope, key)

    async def state_set(self, scope: StateScope, key: str, fields: dict[str, Any]) -> int:
        try:
            return await self._state().set_fields(scope, key, fields)
        except StoreError as error:
            raise ValueError(str(error)) from None

    def _state(self) -> StateService:
        if self.supervisor.state_service is None:
            raise ValueError("the state store is not open yet")
        return self.supervisor.state_service

    async def run(self) -> int:
        http = None
        metrics = self.supervisor.config.metrics
        if metrics.enabled:
            from sharder.http_server import HttpServer  # aiohttp and prometheus: only when on

            http = HttpServer(metrics, self.supervisor)
            try:
                self.supervisor.metrics_url = await http.start()
            except OSError as error:
                log.error("cannot listen for metrics on %s: %s", metrics.address, error.strerror)
                if self.simulator is not None:
                    self.simulator.stop()
                return 1
        server = ControlServer(self.socket_path, self)
        await server.start()
        display = None
        if self.console is not None:
            from sharder.display import StatusDisplay  # rich: only with a display

            display = asyncio.create_task(StatusDisplay(self.status, self.console).run())
        try:
            return await self.supervisor.run()
        finally:
            if display is not None:
                display.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await display
            await server.close()
            if http is not None:
                await http.close()
            if self.simulator is not None:
                self.simulator.stop()
