"""A child's link to the master: every process of a sharder makes nonces no other one makes."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import typing

import pytest

from child.link import NONCE_ORIGIN_SHIFT, ROLE_ID_LIMIT, MasterLink, link_origin
from protocol import PROTOCOL_VERSION, open_connection, socket_from_pipe
from protocol.messages import Hello, Role

ROLES: tuple[Role, ...] = typing.get_args(Role)


def nonce_range(role: Role, process_id: int) -> range:
    """Every nonce the process can make."""
    origin = link_origin(role, process_id)
    return range((origin << NONCE_ORIGIN_SHIFT) + 1, (origin + 1) << NONCE_ORIGIN_SHIFT)


def test_no_two_processes_share_a_nonce() -> None:
    # Ids from 0 (the gate's, and the first worker's of each kind) to the last one allowed.
    ids = [*range(4096), ROLE_ID_LIMIT - 1]
    ranges = sorted(
        (nonce_range(role, process_id) for role in ROLES for process_id in ids),
        key=lambda nonces: nonces.start,
    )
    for before, after in itertools.pairwise(ranges):
        assert before.stop <= after.start
    assert ranges[0].start > 0
    assert ranges[-1].stop <= 2**63  # the highest nonce fits a signed 64-bit int


@pytest.mark.parametrize("process_id", [-1, ROLE_ID_LIMIT])
def test_an_id_outside_the_role_space_is_refused(process_id: int) -> None:
    with pytest.raises(ValueError, match="compute_worker id"):
        link_origin("compute_worker", process_id)


@pytest.mark.parametrize("role", ["shard_worker", "compute_worker", "rest_gate"])
async def test_a_link_makes_the_nonces_of_its_role_and_id(role: Role) -> None:
    ours, theirs = multiprocessing.Pipe()
    master_hello = Hello(version=PROTOCOL_VERSION, role="master", worker_id=0, pid=os.getpid())
    link, master = await asyncio.gather(
        MasterLink.open(ours, role, 0), open_connection(socket_from_pipe(theirs), master_hello)
    )
    try:
        assert [link.next_nonce(), link.next_nonce()] == list(nonce_range(role, 0)[:2])
    finally:
        link.connection.close()
        master.close()
