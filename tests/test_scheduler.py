import random

import pytest

from trainer.scheduler import WindowedFIFO, simulate


def lognormal(seed: int, sigma: float = 1.0):
    rng = random.Random(seed)
    cache: dict[int, float] = {}
    return lambda gid: cache.setdefault(gid, rng.lognormvariate(0.0, sigma))


def test_hands_out_in_submission_order_and_never_collects_outside_the_window():
    q = WindowedFIFO(window=2)
    for i in range(5):
        q.submit(f"p{i}")
    assert [q.hand_out(0).payload for _ in range(5)] == ["p0", "p1", "p2", "p3", "p4"]
    q.complete(3, "r3")
    q.complete(1, "r1")
    assert [g.gid for g in q.collect(4)] == [1]  # 3 is done but outside [head=0, 2)
    q.complete(0, "r0")
    # collecting 0 moves the head to 2, so the window becomes [2, 4) and 3 joins the same collection
    assert [g.gid for g in q.collect(4)] == [0, 3]
    assert q.head == 2 and q.collect(4) == []


def test_strict_fifo_is_window_one_and_greedy_has_no_window():
    fifo, greedy = WindowedFIFO(1), WindowedFIFO(None)
    for q in (fifo, greedy):
        for _ in range(3):
            q.submit(None)
            q.hand_out(0)
        q.complete(2, None)
    assert fifo.collect(3) == [] and [g.gid for g in greedy.collect(3)] == [2]
    with pytest.raises(ValueError):
        WindowedFIFO(0)


@pytest.mark.parametrize("window", [1, 2, 4, 8, None])
def test_simulation_respects_the_window_at_every_collection(window, monkeypatch):
    seen = []
    original = WindowedFIFO.collect

    def checked(self, n):
        taken = original(self, n)
        if self.window is not None:
            # every collected gid was inside [head_at_call, head_at_call + W) when taken; collected
            # groups never run more than W - 1 ahead of the oldest still-uncollected one
            seen.extend(g.gid for g in taken)
            assert all(g.gid < self.head + self.window for g in taken)
        return taken

    monkeypatch.setattr(WindowedFIFO, "collect", checked)
    simulate(window, lognormal(1), steps=100)


@pytest.mark.parametrize("window", [1, 2, 4, 8, None])
def test_every_group_is_collected_within_a_bounded_number_of_steps(window):
    res = simulate(window, lognormal(2, sigma=1.5), steps=300)
    order = res.collected_order
    assert len(order) == len(set(order)) == 300 * 4
    if window is not None:  # windowed: nothing waits forever, and nothing is skipped
        assert res.max_wait_steps <= 2 * window + 8
        assert sorted(order)[:len(order) - 32] == list(range(len(order) - 32))


def test_simulation_is_deterministic_under_the_fake_clock():
    a = simulate(4, lognormal(3), steps=80)
    b = simulate(4, lognormal(3), steps=80)
    assert a == b


def test_a_wide_enough_window_nears_greedy_throughput_and_beats_strict_fifo():
    # long tail (sigma 1.5): a straggler at the head holds the window for ~rate x its duration, so
    # the window that pays off is hundreds of groups wide, not a handful
    kw = dict(producers=32, batch_groups=8, steps=400, train_time=1.0)
    fifo = simulate(1, lognormal(4, sigma=1.5), **kw)
    greedy = simulate(None, lognormal(4, sigma=1.5), **kw)
    windowed = simulate(512, lognormal(4, sigma=1.5), **kw)
    assert windowed.throughput >= 0.9 * greedy.throughput and windowed.throughput >= 2 * fifo.throughput
    assert abs(windowed.length_bias) <= 0.1 and windowed.dropped == 0


def test_bounding_staleness_by_dropping_biases_greedy_toward_short_rollouts_but_not_the_window():
    kw = dict(producers=32, batch_groups=8, steps=400, train_time=1.0)
    windowed = simulate(64, lognormal(5, sigma=1.5), **kw)
    # greedy held to the staleness the window reaches without dropping anything
    greedy = simulate(None, lognormal(5, sigma=1.5), max_staleness=windowed.max_staleness, **kw)
    assert windowed.dropped == 0 and abs(windowed.length_bias) < 0.05
    assert greedy.dropped > 0 and greedy.length_bias < -0.1  # the slow, long rollouts went stale
    assert greedy.max_staleness <= windowed.max_staleness
