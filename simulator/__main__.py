"""``python -m simulator``: serve a fake Discord on 127.0.0.1 until Ctrl-C.

Prints ``rest:``, ``gateway:``, ``control:``, ``cdn:`` and ``token:`` lines (one each, in that
order) once it listens, so a script can start it with ``--port 0`` and read where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields

import uvloop

from child import log_lines
from simulator.config import SimulatorConfig
from simulator.server import Simulator
from simulator.traffic.spec import TrafficSpec

# flag -> (config field, type, help); the defaults come from SimulatorConfig.
FLAGS: dict[str, tuple[str, type, str]] = {
    "--host": ("host", str, "address to bind"),
    "--port": ("port", int, "port to bind; 0 lets the OS choose"),
    "--seed": ("seed", int, "seed of the world"),
    "--guilds": ("guilds", int, "guilds in the world"),
    "--channels-per-guild": ("channels_per_guild", int, "text channels per guild"),
    "--roles-per-guild": ("roles_per_guild", int, "roles per guild besides @everyone"),
    "--members-per-guild": ("members_per_guild", int, "members per guild besides the bot"),
    "--emojis-per-guild": ("emojis_per_guild", int, "custom emoji per guild"),
    "--users": ("users", int, "users in the world; 0: twice the guilds"),
    "--shards": ("shards", int, "least shard count GET /gateway/bot recommends"),
    "--guilds-per-shard": ("guilds_per_shard", int, "recommend a shard per this many; 0: off"),
    "--max-concurrency": ("max_concurrency", int, "identify buckets"),
    "--session-start-limit": ("session_start_total", int, "sessions a bot may start per day"),
    "--session-start-reset": ("session_start_reset", float, "seconds until the budget refills"),
    "--identify-window": ("identify_window", float, "seconds between IDENTIFYs per bucket"),
    "--heartbeat-interval": ("heartbeat_interval", float, "seconds between heartbeats"),
    "--resume-window": ("resume_window", float, "seconds a dropped session stays resumable"),
    "--resume-buffer": ("resume_buffer", int, "dispatches kept per session for RESUME"),
    "--max-guilds-per-shard": ("max_guilds_per_shard", int, "more on a shard closes it with 4011"),
    "--gateway-send-limit": ("gateway_send_limit", int, "client payloads per send window"),
    "--gateway-send-window": ("gateway_send_window", float, "seconds of the send window"),
    "--rest-global-limit": ("rest_global_limit", int, "REST requests per second per bot"),
    "--rest-route-limit": ("rest_route_limit", int, "requests per route bucket per window"),
    "--rest-route-window": ("rest_route_window", float, "seconds of a route bucket's window"),
}


def parse_args(argv: Sequence[str] | None = None) -> tuple[Simulator, argparse.Namespace]:
    """The simulator the flags describe; bad flags exit with code 2 and say what is wrong."""
    defaults = {field.name: field.default for field in fields(SimulatorConfig)}
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Serve a simulated Discord (REST + gateway)."
    )
    for flag, (name, kind, help_text) in FLAGS.items():
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            metavar=kind.__name__.upper(),
            default=defaults[name],
            help=f"{help_text} (default: %(default)s)",
        )
    parser.add_argument(
        "--strict", action="store_true", help="close identify and session budget offenders (4008)"
    )
    parser.add_argument(
        "--traffic-rate", type=float, default=0.0, help="events per second of background traffic"
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log lines (default: text)"
    )
    args = parser.parse_args(argv)
    if args.traffic_rate < 0:
        parser.error(f"--traffic-rate must not be negative, got {args.traffic_rate}")
    try:
        log_lines.configure(args.log_level.upper(), args.log_format, "simulator")
        config = SimulatorConfig(
            strict=args.strict, **{name: getattr(args, name) for name, _, _ in FLAGS.values()}
        )
        simulator = Simulator(config)  # builds and checks the world
    except ValueError as error:
        parser.error(str(error))
    return simulator, args


async def serve(simulator: Simulator, traffic_rate: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with simulator:
        print(f"rest: {simulator.rest_url}")
        print(f"gateway: {simulator.gateway_url}")
        print(f"control: {simulator.control_url}")
        print(f"cdn: {simulator.cdn_url}")
        print(f"token: {simulator.token}", flush=True)
        if traffic_rate > 0:
            simulator.traffic.start(TrafficSpec(rate=traffic_rate))
        await stop.wait()
    print("simulator stopped", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    simulator, args = parse_args(argv)
    try:
        uvloop.run(serve(simulator, args.traffic_rate))
    except OSError as error:
        address = f"{simulator.config.host}:{simulator.config.port}"
        print(f"simulator: cannot listen on {address}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
