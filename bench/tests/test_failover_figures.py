"""npo bench failover's unavailability figures: each refused stretch counts to the fault that
caused it (unit: made-up reads, no broker)."""

from __future__ import annotations

from npo_bench.failover import Fault, Plan, Read, _refused_stretches, _windows


def _reads(answered: list[float], refused: list[float]) -> list[Read]:
    return ([Read(t, t + 0.5, 200, {}) for t in answered]
            + [Read(t, t + 2.0, 503, {"code": "audit.unavailable"}) for t in refused])


def test_a_read_refused_by_the_next_kill_counts_to_that_fault() -> None:
    follower = Fault("follower", [1], killed_at=10, restarting_at=18, restarted_at=30)
    two = Fault("two", [1, 2], killed_at=36.2, restarting_at=44, restarted_at=80)
    reads = _reads(answered=[9, 11, 12, 20, 33, 81], refused=[11.5, 35.0, 37, 50])
    windows = _windows([follower, two], Plan(steady_s=6.0))
    assert _refused_stretches(reads, *windows[id(follower)]) == [0.5]
    assert _refused_stretches(reads, *windows[id(two)]) == [44.0]


def test_a_stretch_lasts_until_the_next_answered_read() -> None:
    reads = _reads(answered=[1, 6.5], refused=[2, 3, 4])
    assert _refused_stretches(reads, 0, 10) == [4.5]
    assert _refused_stretches(_reads([], [2, 3]), 0, 10) == [8.0], "still refused at the end"
