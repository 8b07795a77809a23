"""Progress lines (d2imbalance.progress) on a fake clock: counts, elapsed, ETA by hand. No detectron2."""
import pytest

from d2imbalance.progress import Progress, format_duration


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_durations_are_written_in_seconds_minutes_or_hours():
    assert [format_duration(s) for s in (-3, 0, 42.4, 59.6, 1510, 3599.4, 3600, 11100)] == [
        "0s", "0s", "42s", "1m 00s", "25m 10s", "59m 59s", "1h 00m", "3h 05m"]


def test_progress_counts_items_elapsed_and_eta_from_the_mean_duration():
    clock = FakeClock()
    progress = Progress(4, clock)
    clock.now = 60.0
    assert progress.record("a seed 0", 60.0) == (
        "1/4 runs trained (a seed 0: 1m 00s); elapsed 1m 00s; ETA 3m 00s (3 left x 1m 00s mean per run)")
    clock.now = 180.0  # mean (60 + 120) / 2 = 90 s, 2 runs left -> 3 min
    assert progress.record("b seed 1", 120.0) == (
        "2/4 runs trained (b seed 1: 2m 00s); elapsed 3m 00s; ETA 3m 00s (2 left x 1m 30s mean per run)")
    progress.record("c", 90.0)
    clock.now = 4 * 3600.0
    assert progress.record("d", 3 * 3600.0 + 300.0).endswith("d: 3h 05m); elapsed 4h 00m; all runs trained")


def test_lanes_divide_the_eta_while_that_many_items_are_left():
    lanes = Progress(5, FakeClock(), lanes=2)
    assert lanes.record("a", 60.0).endswith("ETA 2m 00s (4 left x 1m 00s mean per run / 2 lanes)")
    for what in "bc":
        lanes.record(what, 60.0)
    assert lanes.record("d", 60.0).endswith("ETA 1m 00s (1 left x 1m 00s mean per run)")


def test_the_line_names_what_is_counted():
    steps = Progress(3, FakeClock(), done="training-step pairs timed", item="pair")
    assert steps.record("timed", 30.0) == (
        "1/3 training-step pairs timed (timed: 30s); elapsed 0s; ETA 1m 00s (2 left x 30s mean per pair)")
    steps.record("timed", 30.0)
    assert steps.record("timed", 30.0).endswith("; all training-step pairs timed")


@pytest.mark.parametrize("total, lanes", [(0, 1), (3, 0)])
def test_nothing_to_count_is_refused(total, lanes):
    with pytest.raises(ValueError, match=f"total={total} and lanes={lanes} must be >= 1"):
        Progress(total, FakeClock(), lanes=lanes)
