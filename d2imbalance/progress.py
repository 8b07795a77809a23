"""Progress lines for long loops (the comparison's training runs, the benchmark's steps): k/n done, the
time elapsed and an ETA. Pure Python."""
import statistics
import time
from typing import Callable, List

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """42s, 25m 10s, 3h 05m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class Progress:
    """k/n items done, elapsed time and ETA = mean duration of the items done x items left / lanes
    (the lanes busy while that many items are left).

    ``done`` names what k counts ("runs trained") and ``item`` one of them ("run"), so the line reads
    "2/4 runs trained (...); elapsed ...; ETA ... (2 left x ... mean per run)".
    """

    def __init__(
        self,
        total: int,
        clock: Callable[[], float] = time.monotonic,
        lanes: int = 1,
        done: str = "runs trained",
        item: str = "run",
    ):
        if total < 1 or lanes < 1:
            raise ValueError(f"total={total} and lanes={lanes} must be >= 1.")
        self.total = total
        self.clock = clock
        self.lanes = lanes
        self.done = done
        self.item = item
        self.start = clock()
        self.durations: List[float] = []

    def record(self, what: str, duration: float) -> str:
        """Count one finished item (``duration`` seconds) and return the progress line."""
        self.durations.append(duration)
        done, left = len(self.durations), self.total - len(self.durations)
        mean = statistics.mean(self.durations)
        line = (
            f"{done}/{self.total} {self.done} ({what}: {format_duration(duration)}); "
            f"elapsed {format_duration(self.clock() - self.start)}; "
        )
        if left > 0:
            lanes = min(self.lanes, left)
            per_lane = f" / {lanes} lanes" if lanes > 1 else ""
            eta = format_duration(mean * left / lanes)
            return line + f"ETA {eta} ({left} left x {format_duration(mean)} mean per {self.item}{per_lane})"
        return line + f"all {self.done}"
