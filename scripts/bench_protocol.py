"""Protocol benchmark: what the wire costs, against multiprocessing's pickle pipe as the baseline.

Prints, in one run:
  (a) encode+decode of a small COMMAND_EXEC in one process (the CPU ceiling);
  (b) ping-pong round trips over a Pipe between two processes, p50/p99;
  (c) pipelined throughput, 64 requests in flight, batched writes;
  (d) (b) and (c) relayed A -> relay -> B -> relay -> A (the shape of a master route);
  (e) integrity: 1,000,000 requests/replies over one Pipe, none lost or reordered;
each with the project's connection (uvloop) and with ``multiprocessing.Connection`` send/recv
(pickle), every figure the median of several runs, and the target ratios measured in this run.

    python scripts/bench_protocol.py [--runs 5] [--round-trips 5000] [--pipelined 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from protocol import (
    PROTOCOL_VERSION,
    AnyMessage,
    Connection,
    ConnectionClosed,
    Frame,
    FrameDecoder,
    FrameEncoder,
    RoutingTable,
    open_connection,
    socket_from_pipe,
)
from protocol.messages import CommandExec, Hello, ReplyOk

WINDOW = 64
SHARDS = 2
# The echo worker owns shard 1; the requests' guild lives there, so the relay routes by table.
GUILD_ID = 1 << 22
Pipe = multiprocessing.connection.Connection


def request(nonce: int) -> CommandExec:
    return CommandExec(nonce=nonce, deadline=0.0, guild_id=GUILD_ID, name="echo", payload=nonce)


def hello(role: str, worker_id: int) -> Hello:
    return Hello(version=PROTOCOL_VERSION, role=role, worker_id=worker_id, pid=os.getpid())  # type: ignore[arg-type]


async def connect(pipe: Pipe, role: str, worker_id: int) -> Connection:
    return await open_connection(socket_from_pipe(pipe), hello(role, worker_id))


# -- child processes: the project's connection ---------------------------------------------------


def echo_worker(pipe: Pipe) -> None:
    async def serve() -> None:
        connection = await connect(pipe, "shard_worker", 1)
        try:
            while True:
                batch = await connection.recv_batch()
                await connection.send_batch(
                    [ReplyOk(nonce=message.nonce, payload=message.payload) for message in batch]  # type: ignore[union-attr]
                )
        except ConnectionClosed:
            return

    uvloop.run(serve())


def relay_worker(upstream_pipe: Pipe, downstream_pipe: Pipe) -> None:
    """Routes requests by guild through a routing table, and replies back by nonce.

    It forwards from the read callback (``deliver_to``), batching per target and passing frames
    on unchanged, as the master's router does.
    """

    async def serve() -> None:
        upstream = await connect(upstream_pipe, "master", 0)
        downstream = await connect(downstream_pipe, "master", 0)
        workers = {1: downstream}
        table = RoutingTable(SHARDS, {0: 0, 1: 1})
        origin: dict[int, Connection] = {}
        held: set[asyncio.Task[None]] = set()

        def route(source: Connection, batch: list[AnyMessage], frames: list[Frame]) -> None:
            outgoing: dict[Connection, list[Frame]] = defaultdict(list)
            for message, frame in zip(batch, frames, strict=True):
                if isinstance(message, CommandExec):
                    origin[message.nonce] = source
                    outgoing[workers[table.owner_of_guild(message.guild_id)]].append(frame)
                else:
                    assert isinstance(message, ReplyOk)
                    outgoing[origin.pop(message.nonce)].append(frame)
            for target, forwarded in outgoing.items():
                target.forward_nowait(forwarded)
                if not target.writable:
                    hold(source, target)

        def hold(source: Connection, target: Connection) -> None:
            """Backpressure: stop reading ``source`` until ``target`` drains."""
            source.pause_reading()
            waiting = asyncio.create_task(target.wait_writable())
            held.add(waiting)

            def release(task: asyncio.Task[None]) -> None:
                held.discard(task)
                source.resume_reading()

            waiting.add_done_callback(release)

        upstream.deliver_to(route)
        downstream.deliver_to(route)
        ends = [asyncio.ensure_future(c.wait_closed()) for c in (upstream, downstream)]
        await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)

    uvloop.run(serve())


# -- child processes: the pickle baseline --------------------------------------------------------


def pickle_echo_worker(pipe: Pipe) -> None:
    try:
        while True:
            message = pipe.recv()
            pipe.send(ReplyOk(nonce=message.nonce, payload=message.payload))
    except EOFError:
        return


def pickle_relay_worker(upstream: Pipe, downstream: Pipe) -> None:
    table = RoutingTable(SHARDS, {0: 0, 1: 1})
    workers = {1: downstream}
    origin: dict[int, Pipe] = {}
    try:
        while True:
            for ready in multiprocessing.connection.wait([upstream, downstream]):
                assert isinstance(ready, Pipe)
                message = ready.recv()
                if isinstance(message, CommandExec):
                    origin[message.nonce] = ready
                    workers[table.owner_of_guild(message.guild_id)].send(message)
                else:
                    origin.pop(message.nonce).send(message)
    except EOFError:
        return


# -- the client side (this process) --------------------------------------------------------------


@dataclass
class Figures:
    p50_us: float
    p99_us: float
    rate: float


def percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1000


async def ours_ping_pong(connection: Connection, count: int) -> Figures:
    samples = []
    started = time.perf_counter()
    for nonce in range(count):
        sent = time.perf_counter_ns()
        await connection.send(request(nonce))
        reply = await connection.recv()
        samples.append(time.perf_counter_ns() - sent)
        assert reply.nonce == nonce  # type: ignore[union-attr]
    elapsed = time.perf_counter() - started
    return Figures(percentile(samples, 0.5), percentile(samples, 0.99), count / elapsed)


async def ours_pipelined(connection: Connection, count: int) -> float:
    """Round trips/s with WINDOW in flight; asserts every reply arrives once, in order."""
    started = time.perf_counter()
    await connection.send_batch([request(nonce) for nonce in range(min(WINDOW, count))])
    sent = min(WINDOW, count)
    expected = 0
    while expected < count:
        batch = await connection.recv_batch()
        for reply in batch:
            if reply.nonce != expected:  # type: ignore[union-attr]
                raise AssertionError(f"reply {reply.nonce} arrived, expected {expected}")  # type: ignore[union-attr]
            expected += 1
        more = min(len(batch), count - sent)
        if more:
            await connection.send_batch([request(nonce) for nonce in range(sent, sent + more)])
            sent += more
    return count / (time.perf_counter() - started)


def pickle_ping_pong(pipe: Pipe, count: int) -> Figures:
    samples = []
    started = time.perf_counter()
    for nonce in range(count):
        sent = time.perf_counter_ns()
        pipe.send(request(nonce))
        reply = pipe.recv()
        samples.append(time.perf_counter_ns() - sent)
        assert reply.nonce == nonce
    elapsed = time.perf_counter() - started
    return Figures(percentile(samples, 0.5), percentile(samples, 0.99), count / elapsed)


def pickle_pipelined(pipe: Pipe, count: int) -> float:
    started = time.perf_counter()
    sent = 0
    for nonce in range(min(WINDOW, count)):
        pipe.send(request(nonce))
        sent += 1
    for expected in range(count):
        reply = pipe.recv()
        assert reply.nonce == expected
        if sent < count:
            pipe.send(request(sent))
            sent += 1
    return count / (time.perf_counter() - started)


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    ping_pong: Figures
    pipelined: float


def spawn(target: Callable[..., None], *pipes: Pipe) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=pipes, daemon=True)
    process.start()
    for pipe in pipes:
        pipe.close()
    return process


def topology(relayed: bool, pickle: bool) -> tuple[Pipe, list[multiprocessing.process.BaseProcess]]:
    """Start the peer processes; return this process's pipe end and the children."""
    echo = pickle_echo_worker if pickle else echo_worker
    ours, theirs = multiprocessing.Pipe(duplex=True)
    if not relayed:
        return ours, [spawn(echo, theirs)]
    relay_down, echo_end = multiprocessing.Pipe(duplex=True)
    relay = pickle_relay_worker if pickle else relay_worker
    return ours, [spawn(relay, theirs, relay_down), spawn(echo, echo_end)]


def median_scenario(samples: list[Scenario]) -> Scenario:
    return Scenario(
        Figures(
            statistics.median(s.ping_pong.p50_us for s in samples),
            statistics.median(s.ping_pong.p99_us for s in samples),
            statistics.median(s.ping_pong.rate for s in samples),
        ),
        statistics.median(s.pipelined for s in samples),
    )


def run_ours(relayed: bool, runs: int, round_trips: int, pipelined: int) -> Scenario:
    pipe, children = topology(relayed, pickle=False)

    async def measure() -> list[Scenario]:
        connection = await connect(pipe, "master" if not relayed else "shard_worker", 0)
        await ours_ping_pong(connection, 1000)  # warm-up
        results = [
            Scenario(
                await ours_ping_pong(connection, round_trips),
                await ours_pipelined(connection, pipelined),
            )
            for _ in range(runs)
        ]
        connection.close()
        await connection.wait_closed()
        return results

    return _finish(uvloop.run(measure()), children)


def run_pickle(relayed: bool, runs: int, round_trips: int, pipelined: int) -> Scenario:
    pipe, children = topology(relayed, pickle=True)
    pickle_ping_pong(pipe, 1000)
    results = [
        Scenario(pickle_ping_pong(pipe, round_trips), pickle_pipelined(pipe, pipelined))
        for _ in range(runs)
    ]
    pipe.close()
    return _finish(results, children)


def _finish(
    results: list[Scenario], children: list[multiprocessing.process.BaseProcess]
) -> Scenario:
    reap(children)
    return median_scenario(results)


def reap(children: list[multiprocessing.process.BaseProcess]) -> None:
    for child in children:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


def integrity(count: int) -> float:
    pipe, children = topology(relayed=False, pickle=False)

    async def measure() -> float:
        connection = await connect(pipe, "master", 0)
        rate = await ours_pipelined(connection, count)
        connection.close()
        await connection.wait_closed()
        return rate

    rate = uvloop.run(measure())
    reap(children)
    return rate


def encode_decode_rate(count: int) -> float:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    message = request(12345)
    started = time.perf_counter()
    for _ in range(count):
        for _decoded in decoder.feed(encoder.encode(message)):
            pass
    return count / (time.perf_counter() - started)


# -- report --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions; medians are reported")
    parser.add_argument("--round-trips", type=int, default=5000, help="per ping-pong run")
    parser.add_argument("--pipelined", type=int, default=50000, help="requests per pipelined run")
    parser.add_argument("--integrity", type=int, default=1_000_000, help="requests, 0 to skip")
    args = parser.parse_args(argv)
    sizes = (args.runs, args.round_trips, args.pipelined)

    print(
        f"bench_protocol: {os.cpu_count()} cores, python {sys.version.split()[0]}, "
        f"medians of {args.runs} runs"
    )
    codec = statistics.median(encode_decode_rate(200_000) for _ in range(args.runs))
    print(f"(a) encode+decode COMMAND_EXEC, one process:   {codec:>12,.0f} msgs/s")

    direct = run_ours(False, *sizes)
    direct_pickle = run_pickle(False, *sizes)
    relayed = run_ours(True, *sizes)
    relayed_pickle = run_pickle(True, *sizes)

    def row(label: str, scenario: Scenario) -> None:
        ping = scenario.ping_pong
        print(
            f"    {label:<28} p50 {ping.p50_us:7.1f} us  p99 {ping.p99_us:7.1f} us  "
            f"ping-pong {ping.rate:>8,.0f}/s  pipelined x{WINDOW} {scenario.pipelined:>9,.0f}/s"
        )

    print("(b,c) direct, two processes over one Pipe:")
    row("sharder connection (uvloop)", direct)
    row("multiprocessing pickle", direct_pickle)
    print("(d) relayed A -> relay -> B -> relay -> A:")
    row("sharder connection (uvloop)", relayed)
    row("multiprocessing pickle", relayed_pickle)

    targets = [
        (
            "direct pipelined / pickle ping-pong rate",
            direct.pipelined / direct_pickle.ping_pong.rate,
            ">=",
            6.0,
        ),
        ("relayed p50 / direct p50", relayed.ping_pong.p50_us / direct.ping_pong.p50_us, "<=", 1.5),
        ("relayed pipelined / direct pipelined", relayed.pipelined / direct.pipelined, ">=", 0.5),
    ]
    print("targets:")
    for label, ratio, sense, bound in targets:
        met = ratio >= bound if sense == ">=" else ratio <= bound
        print(
            f"    {label:<42} {ratio:6.2f}  (target {sense} {bound})  {'met' if met else 'MISSED'}"
        )

    if args.integrity:
        rate = integrity(args.integrity)
        print(
            f"(e) integrity: {args.integrity:,} requests/replies over one Pipe, "
            f"none lost or reordered, {rate:,.0f}/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
