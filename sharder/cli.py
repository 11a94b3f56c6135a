"""``python -m sharder``: start the master, or talk to a running one.

    python -m sharder start [--config F] [--simulate] [--shards S] [--workers W]
    python -m sharder status [--json]
    python -m sharder stop
    python -m sharder restart WORKER | --rolling [--no-wait]
    python -m sharder move SHARD WORKER [--no-wait]
    python -m sharder reshard [SHARDS] [--no-wait]
    python -m sharder state get|set SCOPE KEY [FIELD=VALUE ...]

All but ``start`` find the master through its control socket: ``--socket``, else
``[control].socket`` of ``--config``, else ``sharder.sock`` in the current directory.
Bad flags, a bad config file or a missing token exit with code 2 and say what is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec
import uvloop

from child import log_lines
from sharder import config as config_module
from sharder.config import Config, ConfigError
from sharder.control import ControlError, call_sync
from sharder.intents import intent_value
from sharder.status import MoveStatus, ReshardStatus, RollStatus, SharderStatus

USAGE_ERROR = 2
SCOPES = ("guild_config", "member_activity", "permissions", "user_data")
CONTROL_TIMEOUT = 10.0
CHANGE_POLL = 0.25  # seconds between looks at a change being followed
Change = RollStatus | MoveStatus | ReshardStatus


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m sharder", description="Multi-process sharder for hikari bots."
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    start = commands.add_parser("start", help="run the master in the foreground")
    start.add_argument("--config", type=Path, help="TOML configuration file")
    start.add_argument(
        "--simulate", action="store_true", help="run against the built-in simulator (no token)"
    )
    start.add_argument("--shards", type=positive_int, help="shard count (overrides the config)")
    start.add_argument(
        "--workers", type=positive_int, help="worker processes (overrides the config)"
    )
    start.add_argument(
        "--traffic-rate",
        type=float,
        help="with --simulate: simulated events per second (overrides the config)",
    )
    start.add_argument("--no-status", action="store_true", help="no live status in the terminal")
    for name, help_text in (
        ("status", "show the running master's status"),
        ("stop", "stop the running master gracefully"),
        ("restart", "restart one worker of the running master"),
        ("move", "hand a shard's session to another worker"),
        ("reshard", "change the shard count live (default: Discord's recommendation)"),
        ("state", "read or change the bot's shared state"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", type=Path, help="TOML file naming the control socket")
        command.add_argument("--socket", type=Path, help="the master's control socket")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print JSON")
        if name == "restart":
            command.add_argument("worker", nargs="?", type=non_negative_int, help="worker id")
            command.add_argument(
                "--rolling",
                action="store_true",
                help="replace every worker in turn by a process with the bot code imported anew",
            )
        if name == "move":
            command.add_argument("shard", type=non_negative_int, help="shard id")
            command.add_argument("worker", type=non_negative_int, help="worker id")
        if name == "reshard":
            command.add_argument("shards", nargs="?", type=positive_int, help="new shard count")
        if name in ("restart", "move", "reshard"):
            command.add_argument(
                "--no-wait", action="store_true", help="return at once, not following the change"
            )
        if name == "state":
            command.add_argument("action", choices=("get", "set"))
            command.add_argument("scope", choices=SCOPES)
            command.add_argument("key", help="guild id, user id, or guild:user for member_activity")
            command.add_argument(
                "fields", nargs="*", metavar="FIELD=VALUE", help="with set: values as JSON or text"
            )
    return root


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def fail(message: str) -> NoReturn:
    print(f"sharder: {message}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def load_config(args: argparse.Namespace) -> Config:
    try:
        config = config_module.load(args.config)
        if args.command == "start":
            sharding = config.sharding
            config.sharding = msgspec.structs.replace(
                sharding,
                shards=args.shards or sharding.shards,
                workers=args.workers or sharding.workers,
            )
            if args.traffic_rate is not None:
                if args.traffic_rate < 0:
                    raise ConfigError(
                        f"--traffic-rate must not be negative, got {args.traffic_rate}"
                    )
                config.simulator = msgspec.structs.replace(
                    config.simulator, traffic_rate=args.traffic_rate
                )
            config.check()
    except ConfigError as error:
        fail(str(error))
    return config


def socket_path(args: argparse.Namespace, config: Config) -> Path:
    return Path(args.socket) if getattr(args, "socket", None) else Path(config.control.socket)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = load_config(args)
    if args.command == "start":
        return start(args, config)
    return control(args, config)


def start(args: argparse.Namespace, config: Config) -> int:
    # Imported here: the control commands stay quick, without the supervisor's code.
    from sharder.master import Master
    from sharder.simulated import SimulatorChild
    from sharder.supervisor import Discord, Supervisor

    # JSON lines are for a log shipper: no status display on stderr between them.
    show_status = not args.no_status and config.log_format == "text"
    console = None
    if show_status:  # rich only for a display: a service (--no-status) runs without it
        from rich.console import Console
        from rich.logging import RichHandler

        console = Console(stderr=True)
    live = console is not None and console.is_terminal
    if live:
        # Through rich, so that log lines scroll above the live status instead of over it.
        handler: logging.Handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(
            level=config.log_level, format="%(name)s: %(message)s", handlers=[handler]
        )
    else:
        log_lines.configure(config.log_level, config.log_format, "master")
    intents = intent_value(config.bot.intents)
    token = config_module.token_from_environment(config)
    # Out of the environment before any child starts: the shard workers get the token in their
    # spec, and the others (compute workers parsing untrusted images, the REST gate, the
    # simulator) must not inherit it.
    os.environ.pop(config.bot.token_env, None)
    path = socket_path(args, config)
    with contextlib.suppress(ControlError, TimeoutError, OSError):
        call_sync(path, {"command": "status"}, 2.0)
        fail(f"a sharder is already running (control socket {path})")
    simulator = None
    if args.simulate:
        simulator = SimulatorChild(config.simulator, config.sharding.shards, config.log_format)
        try:
            endpoints = simulator.start()
        except (OSError, RuntimeError, TimeoutError) as error:
            print(f"sharder: the simulator did not start: {error}", file=sys.stderr)
            return 1
        discord = Discord(
            endpoints.token,
            endpoints.rest_url,
            intents,
            simulated=True,
            identify_window=config.simulator.identify_window,
            session_period=config.simulator.session_start_reset,
            custom_emoji_url=f"{endpoints.cdn_url}/emojis/",
            unicode_emoji_url=f"{endpoints.cdn_url}/emojis/unicode/",
        )
    else:
        if token is None:
            fail(
                f"no bot token: set the environment variable {config.bot.token_env} "
                "(or name another with [bot].token_env in the config), "
                "or run against the built-in simulator with `python -m sharder start --simulate`"
            )
        discord = Discord(
            token,
            config.discord.api_url,
            intents,
            simulated=False,
            identify_window=config_module.DISCORD_IDENTIFY_WINDOW,
            session_period=config_module.DISCORD_SESSION_PERIOD,
            custom_emoji_url=config.compute.custom_emoji_url,
            unicode_emoji_url=config.compute.unicode_emoji_url,
        )
    # Workers write to the same terminal; under the live table only their warnings show.
    supervisor = Supervisor(config, discord, worker_log_level="WARNING" if live else None)
    master = Master(supervisor, path, simulator, console)
    try:
        return uvloop.run(master.run())
    except ControlError as error:  # the control socket cannot be served (already running, bad path)
        if simulator is not None:
            simulator.stop()
        fail(str(error))


def control(args: argparse.Namespace, config: Config) -> int:
    request: dict[str, Any] = {"command": args.command}
    if args.command == "restart":
        if (args.worker is None) == (not args.rolling):
            fail("restart needs a WORKER, or --rolling for every worker in turn")
        if args.rolling:
            request["rolling"] = True
        else:
            request["worker"] = args.worker
    if args.command == "move":
        request.update(shard=args.shard, worker=args.worker)
    if args.command == "reshard":
        request["shards"] = args.shards
    if args.command == "state":
        request = {"command": f"state_{args.action}", "scope": args.scope, "key": args.key}
        if args.action == "set":
            request["fields"] = parse_fields(args.fields)
    path = socket_path(args, config)
    answer = ask(path, request)
    if answer is None:
        return 1
    if args.command == "status":
        if args.json:
            print(json.dumps(answer["status"], indent=2))
        else:
            from rich.console import Console

            from sharder.display import status_table

            Console().print(status_table(msgspec.convert(answer["status"], SharderStatus)))
    elif args.command == "state":
        print(json.dumps(answer.get("value") if args.action == "get" else answer))
    else:
        print(answer.get("message", "ok"))
        if args.command == "restart" and args.rolling and not args.no_wait:
            return follow(path, lambda status: status.roll)
        if args.command == "move" and not args.no_wait:
            return follow(path, lambda status: status.move)
        if args.command == "reshard" and not args.no_wait:
            return follow(path, lambda status: status.reshard)
    return 0


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The master's answer to ``request``; None, and why on stderr, if there is none."""
    try:
        answer = call_sync(path, request, CONTROL_TIMEOUT)
    except (ControlError, TimeoutError) as error:
        print(f"sharder: {error}", file=sys.stderr)
        return None
    if not answer.get("ok"):
        print(f"sharder: {answer.get('error', 'the master refused')}", file=sys.stderr)
        return None
    return answer


def follow(path: Path, change_of: Callable[[SharderStatus], Change | None]) -> int:
    """Print a change's steps (a rolling restart, a move) as the status shows them, until it
    ends; 0 if it is done."""
    shown = None
    while True:
        answer = ask(path, {"command": "status"})
        if answer is None:
            return 1
        change = change_of(msgspec.convert(answer["status"], SharderStatus))
        if change is None:
            print("sharder: the master shows no such change", file=sys.stderr)
            return 1
        if change.state == "done":
            print(change.line())
            return 0
        if change.state in ("failed", "cancelled"):
            print(f"sharder: {change.line()}", file=sys.stderr)
            return 1
        if change.line() != shown:
            shown = change.line()
            print(shown)
        time.sleep(CHANGE_POLL)


def parse_fields(pairs: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; a value that is JSON is taken as such, anything else as text."""
    if not pairs:
        fail("state set needs at least one FIELD=VALUE")
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            fail(f"not FIELD=VALUE: {pair!r}")
        try:
            fields[name] = json.loads(text)
        except json.JSONDecodeError:
            fields[name] = text
    return fields
