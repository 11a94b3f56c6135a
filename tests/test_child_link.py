"""A child's link to the master: every process the master starts makes nonces no other makes,
a restarted one included."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

import pytest

from child.link import NONCE_ORIGIN_SHIFT, MasterLink
from protocol import PROTOCOL_VERSION, HandshakeFailed, open_connection, socket_from_pipe
from protocol.messages import Hello, Role
from sharder.children import ORIGIN_LIMIT, Children
from sharder.config import SupervisorSection


async def linked(role: Role, origin: int) -> tuple[MasterLink, asyncio.BaseProtocol]:
    ours, theirs = multiprocessing.Pipe()
    master_hello = Hello(
        version=PROTOCOL_VERSION, role="master", worker_id=0, pid=os.getpid(), nonce_origin=origin
    )
    return await asyncio.gather(
        MasterLink.open(ours, role, 0), open_connection(socket_from_pipe(theirs), master_hello)
    )


@pytest.mark.parametrize("role", ["shard_worker", "compute_worker", "rest_gate"])
async def test_a_link_makes_nonces_from_the_origin_the_master_gave(role: Role) -> None:
    link, master = await linked(role, 5)
    try:
        first = (5 << NONCE_ORIGIN_SHIFT) + 1
        assert [link.next_nonce(), link.next_nonce()] == [first, first + 1]
    finally:
        link.connection.close()
        master.close()  # type: ignore[attr-defined]


async def test_a_master_hello_without_an_origin_is_refused() -> None:
    with pytest.raises(HandshakeFailed, match="no nonce origin"):
        await linked("shard_worker", 0)


def test_every_process_started_gets_an_origin_of_its_own_below_the_limit() -> None:
    children = Children(SupervisorSection(), lambda: None, lambda: False, lambda _: None)
    # Shard worker 0, compute worker 0, the gate, then restarts: each spawn takes the next.
    origins = [children.next_origin() for _ in range(100_000)]
    assert len(set(origins)) == len(origins)
    assert all(0 < origin < ORIGIN_LIMIT for origin in origins)  # never the master's 0
    # The highest nonce of the highest origin fits a signed 64-bit int.
    assert ((ORIGIN_LIMIT - 1) << NONCE_ORIGIN_SHIFT) + (1 << NONCE_ORIGIN_SHIFT) - 1 < 2**63
