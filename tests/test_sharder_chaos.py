"""Continuity under faults: ``scripts/bench_chaos.py`` in short.

The sharder runs as a user runs it (the reference bot, 4 workers on 8 shards, one identify
bucket, strict simulator) under 20 ``!ping`` a second for a minute, with a fault every 10 s,
each kind once: ``kill -9`` and SIGSTOP of a worker, ``python -m sharder restart``, and from the
simulator a dropped connection, a RECONNECT and a non-resumable INVALID_SESSION of a worker's
shards. Every message that reached a session is answered exactly once, and each worker answers
within 2 s of serving again. The identify window is 1 s rather than Discord's 5 s, so that the
8 shards start in seconds; the benchmark runs with Discord's.
"""

from __future__ import annotations

from collections import Counter

from scripts.bench_chaos import FAULT_KINDS, ChaosOptions, run_chaos, summary

OPTIONS = ChaosOptions(seconds=60.0, fault_every=10.0, rate=20.0, identify_window=1.0)


async def test_every_message_is_answered_once_through_faults() -> None:
    report = await run_chaos(OPTIONS, echo=print)
    text = "\n".join(summary(report))
    print(text)

    assert Counter(fault.kind for fault in report.faults) == Counter(FAULT_KINDS), text
    assert all(fault.error is None for fault in report.faults), text
    assert len(report.messages) >= OPTIONS.rate * OPTIONS.seconds * 0.9, text
    assert not report.lost, text
    assert not report.doubles, text
    for fault in report.faults:
        assert fault.serving_at is not None, f"fault {fault.number} ({fault.kind})\n{text}"
        assert fault.first_reply_delay is not None, f"fault {fault.number}\n{text}"
        assert fault.first_reply_delay <= OPTIONS.target_first_reply_s, text
