"""A bare gateway client for tests: speaks the protocol by hand, so tests can break its rules.

It decompresses whatever transport compression it asked for and hands back the decoded
payloads; every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import sys
import zlib
from typing import Any

import aiohttp
import msgspec

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from simulator.compression import NONE, ZLIB_STREAM, ZSTD_STREAM

RECEIVE_TIMEOUT = 5.0
ALL_INTENTS = (1 << 26) - 1


class GatewayClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"gateway closed with {code}")
        self.code = code


class RawGatewayClient:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, mode: str):
        self.http = http
        self.ws = ws
        self.mode = mode
        self._zlib = zlib.decompressobj()
        self._zstd = zstd.ZstdDecompressor()
        self.seq: int | None = None
        self.session_id: str | None = None

    @classmethod
    async def connect(
        cls, url: str, mode: str = ZLIB_STREAM, query: str | None = None
    ) -> RawGatewayClient:
        if query is None:
            query = "v=10&encoding=json" + ("" if mode == NONE else f"&compress={mode}")
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                f"{url}?{query}", timeout=aiohttp.ClientWSTimeout(ws_close=2)
            )
        except BaseException:
            await http.close()
            raise
        return cls(http, ws, mode)

    async def close(self, code: int = 1000) -> None:
        await self.ws.close(code=code)
        await self.http.close()

    async def abort(self) -> None:
        """Vanish without a close frame, as a crashed process would."""
        transport = self.ws._response.connection.transport if self.ws._response.connection else None
        if transport is not None:
            transport.abort()
        await self.http.close()

    async def send(self, payload: object) -> None:
        await self.ws.send_bytes(msgspec.json.encode(payload))

    async def receive(self, timeout: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
        message = await self.ws.receive(timeout)
        if message.type == aiohttp.WSMsgType.TEXT:
            assert self.mode == NONE, "TEXT frame on a compressed stream"
            data = message.data.encode()
        elif message.type == aiohttp.WSMsgType.BINARY:
            assert self.mode != NONE, "BINARY frame without compression"
            if self.mode == ZLIB_STREAM:
                assert message.data.endswith(b"\x00\x00\xff\xff"), "zlib message without sync flush"
                data = self._zlib.decompress(message.data)
            else:
                assert self.mode == ZSTD_STREAM
                data = self._zstd.decompress(message.data)
        else:
            raise GatewayClosed(self.ws.close_code)
        payload: dict[str, Any] = msgspec.json.decode(data)
        if payload.get("s") is not None:
            self.seq = payload["s"]
        return payload

    async def receive_until(
        self, event: str, timeout: float = RECEIVE_TIMEOUT
    ) -> list[dict[str, Any]]:
        """Payloads up to and including the first dispatch named ``event``."""
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while not received or received[-1].get("t") != event:
                received.append(await self.receive(timeout))
        return received

    async def expect_close(self, timeout: float = RECEIVE_TIMEOUT) -> int | None:
        """Read until the server closes; its close code."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.receive(timeout)
                except GatewayClosed as closed:
                    return closed.code

    async def hello(self) -> int:
        hello = await self.receive()
        assert hello["op"] == 10, hello
        interval: int = hello["d"]["heartbeat_interval"]
        return interval

    async def identify(
        self,
        token: str,
        shard: tuple[int, int] = (0, 1),
        intents: int = ALL_INTENTS,
        **extra: Any,
    ) -> dict[str, Any]:
        """HELLO, IDENTIFY, READY; returns READY's data."""
        await self.hello()
        await self.send(
            {
                "op": 2,
                "d": {
                    "token": token,
                    "shard": list(shard),
                    "intents": intents,
                    "properties": {"os": "linux", "browser": "test", "device": "test"},
                    **extra,
                },
            }
        )
        ready = await self.receive()
        assert ready["t"] == "READY", ready
        self.session_id = ready["d"]["session_id"]
        data: dict[str, Any] = ready["d"]
        return data

    async def resume(self, token: str, session_id: str, seq: int | None) -> None:
        await self.hello()
        await self.send({"op": 6, "d": {"token": token, "session_id": session_id, "seq": seq}})
