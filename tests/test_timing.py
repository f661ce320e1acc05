"""espnet.utils.timing: the benchmarks' median timing."""

import pytest

from espnet.utils import timing


def test_median_seconds_runs_warmup_then_repeats_and_takes_the_median(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # start/stop pairs: 5, 1, 3 seconds
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert timing.median_seconds(lambda: calls.append(1), repeats=3, warmup=2) == pytest.approx(3.0)
    assert len(calls) == 5  # 2 untimed + 3 timed


def test_median_seconds_refuses_no_repeats():
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        timing.median_seconds(lambda: None, repeats=0)
