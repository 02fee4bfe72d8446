"""Timing spread: every timed row has at least three timed blocks, or no spread at all."""

import itertools
import math
import time

import pytest

from jfbbench import estimators, problems
from jfbbench.measure import float64_reference, measure, time_call
from jfbbench.measure.timing import MIN_BLOCKS


def sleeper(durations):
    """A call that sleeps the next of ``durations`` (cycled) and counts its calls."""
    cycle = itertools.cycle(durations)
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(cycle))

    return fn, calls


def test_a_call_longer_than_min_run_time_is_timed_in_three_blocks_with_its_spread():
    fn, calls = sleeper([0.01, 0.03])
    t = time_call(fn, min_run_time=0.005, warmup=0)
    assert t.repeats >= MIN_BLOCKS and t.calls == t.repeats  # blocks of one call each
    assert len(calls) >= t.calls
    assert 0.01 <= t.median_s <= 0.05
    assert t.iqr_s > 0.005  # calls of 10 and 30 ms: the spread shows it


def test_short_calls_are_timed_in_blocks_and_repeats_counts_blocks():
    fn, calls = sleeper([0.0005])
    t = time_call(fn, min_run_time=0.05, warmup=0)
    assert t.repeats >= MIN_BLOCKS and t.calls >= t.repeats
    assert len(calls) >= t.calls
    assert t.median_s == pytest.approx(0.0005, rel=2.0)
    assert math.isfinite(t.iqr_s)


def test_fewer_blocks_than_three_report_no_spread():
    fn, _ = sleeper([0.01, 0.03])
    t = time_call(fn, min_run_time=0.001, warmup=0, min_blocks=1)
    assert t.repeats == 1 and math.isnan(t.iqr_s)


def test_bad_min_blocks_is_refused():
    with pytest.raises(ValueError, match="min_blocks must be an integer >= 1, got 0"):
        time_call(lambda: None, min_blocks=0)


def test_a_measured_row_has_three_blocks_even_when_one_call_outlasts_min_run_time():
    p = problems.make("tikhonov", lipschitz=0.9, dim=6)
    ref = float64_reference(lambda dtype: p)
    row = measure(p, estimators.make("deq"), ref, timing=True, min_run_time=1e-6)
    assert row["time_repeats"] >= MIN_BLOCKS and math.isfinite(row["time_iqr_s"]) and row["time_s"] > 0
