"""The per-user flood limit (chat/flood.py) against the real Redis: a burst is judged over the last
WINDOW_SECONDS wherever it falls, and an update delivered again counts once."""

from __future__ import annotations

import itertools

import pytest

from chat import flood
from tests.e2e.conftest import new_user_id

_update_ids = itertools.count(1)


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    # A whole number of windows, minus half a second: the burst below straddles a window's boundary.
    clock = _Clock(1_900_000_000 - 0.5)
    monkeypatch.setattr(flood.time, "time", clock.time)
    return clock


def _burst(user: int, count: int) -> list[tuple[bool, bool]]:
    return [flood.allowed(user, next(_update_ids)) for _ in range(count)]


def test_a_burst_across_a_window_boundary_is_still_one_burst(clock):
    user = new_user_id()
    half = flood.max_updates_per_window() // 2 + 5
    first = _burst(user, half)
    clock.now += 1.0  # into the next fixed window: a fixed window would start counting again
    second = _burst(user, half)
    outcomes = first + second
    assert [handle for handle, _ in outcomes].count(True) == flood.max_updates_per_window()
    assert [tell for _, tell in outcomes].count(True) == 1  # told once, not once per dropped update


def test_the_limit_frees_up_as_the_window_slides(clock):
    user = new_user_id()
    _burst(user, flood.max_updates_per_window())
    assert _burst(user, 1) == [(False, True)]
    clock.now += flood.WINDOW_SECONDS + 0.1
    assert _burst(user, 1) == [(True, False)]


def test_an_update_delivered_again_counts_once(clock):
    user = new_user_id()
    for _ in range(flood.max_updates_per_window() + 5):
        assert flood.allowed(user, 42) == (True, False)


def test_updates_counted_together_are_judged_in_their_order(clock):
    """A worker counts the updates it took together in one round trip: the same verdicts, in order,
    as one by one; another user in the same call is not counted with them."""
    user, other = new_user_id(), new_user_id()
    limit = flood.max_updates_per_window()
    taken = [(user, next(_update_ids)) for _ in range(limit + 3)]
    taken.insert(5, (other, next(_update_ids)))
    verdicts = flood.allowed_many(taken)
    mine = [verdict for (sender, _), verdict in zip(taken, verdicts, strict=True) if sender == user]
    assert mine == [(True, False)] * limit + [(False, True), (False, False), (False, False)]
    assert verdicts[5] == (True, False)
