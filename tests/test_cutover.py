"""Which generation handles a dispatch around a reshard's cutover: messages and interactions by
their snowflakes, other events by their arrival, the handshake always."""

from __future__ import annotations

import time

from worker.cutover import CutoverGate, snowflake_at


def message(at: float) -> dict[str, str]:
    return {"id": str(snowflake_at(at) | 0x3FFFFF), "content": "!ping"}  # any increment bits


def test_before_any_cutover_the_old_generation_serves_and_the_new_one_is_muted() -> None:
    old, new = CutoverGate(new=False), CutoverGate(new=True)
    for event in ("MESSAGE_CREATE", "GUILD_CREATE", "MESSAGE_REACTION_ADD"):
        assert old.ours(event, message(time.time()))
        assert not new.ours(event, message(time.time()))


def test_messages_and_interactions_belong_where_their_snowflake_falls_in_both() -> None:
    cut = time.time() + 60  # ahead: arrival alone would say "before"
    old, new = CutoverGate(new=False), CutoverGate(new=True)
    old.cut(cut)
    new.cut(cut)
    for event in ("MESSAGE_CREATE", "INTERACTION_CREATE"):
        for created, old_side in ((cut - 0.002, True), (cut, False), (cut + 5, False)):
            payload = message(created)
            assert old.ours(event, payload) is old_side, (event, created - cut)
            assert new.ours(event, payload) is not old_side, (event, created - cut)


def test_other_events_belong_where_their_arrival_falls() -> None:
    old, new = CutoverGate(new=False), CutoverGate(new=True)
    ahead = time.time() + 60
    old.cut(ahead)
    new.cut(ahead)
    assert old.ours("MESSAGE_REACTION_ADD", {"message_id": "1"})
    assert not new.ours("MESSAGE_REACTION_ADD", {"message_id": "1"})
    past = time.time() - 1
    old.cut(past)
    new.cut(past)
    assert not old.ours("GUILD_MEMBER_UPDATE", {})
    assert new.ours("GUILD_MEMBER_UPDATE", {})


def test_the_handshake_reaches_every_generation() -> None:
    new = CutoverGate(new=True)
    assert new.ours("READY", {}) and new.ours("RESUMED", {})
    old = CutoverGate(new=False)
    old.cut(time.time() - 1)
    assert old.ours("READY", {}) and old.ours("RESUMED", {})
