"""How many intra-op threads a CPU training process gives torch.

torch's default is one thread per core. Its OpenMP threads busy-wait for each other at the end of
every parallel region, so when another process (or this run's own data-loader workers) holds one of
the cores, a thread waits for one that is not running and every layer stalls: one training step of
the shapes RetinaNet-ResObj (4 images) took 11.4-13.1 s with 2 threads and 2.3-3.1 s with 1 thread
on a 2-core machine under a load of 4-8, and 2.01 s vs 1.27 s beside one busy process. Yet on an idle
machine the same job ran twice as fast with 2 threads as with 1 (0.69 s vs 1.29 s). No fixed count is right for both, so train_net starts with the safe one
(a core left to each data-loader worker, the rest split between the processes of the machine), then
times a few training steps at each candidate count, keeps the fastest and times them again every
few hundred steps (ThreadTuner). ``OMP_NUM_THREADS`` fixes the count and turns the timing off.
"""
import os
import statistics
from typing import Dict, List, Mapping, Sequence, Tuple

__all__ = ["available_cores", "choose_cpu_threads", "thread_candidates", "ThreadTuner"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_cpu_threads(
    environ: Mapping[str, str], cores: int, num_workers: int, processes: int = 1
) -> Tuple[int, str]:
    """(threads, why) for one of ``processes`` CPU training processes on a machine with ``cores``
    usable cores, each process feeding ``num_workers`` data-loader workers.

    ``OMP_NUM_THREADS`` in ``environ`` wins when it is a positive int; otherwise
    ``max(1, cores // processes - num_workers)``.

    Raises:
        ValueError: if OMP_NUM_THREADS is set to anything but a positive int.
    """
    user = environ.get("OMP_NUM_THREADS")
    if user is not None:
        if not user.strip().isdigit() or int(user) < 1:
            raise ValueError(f"OMP_NUM_THREADS={user!r} is not a positive integer; set e.g. OMP_NUM_THREADS=1.")
        return int(user), f"OMP_NUM_THREADS={int(user)} set by the user"
    share = cores // processes
    threads = max(1, share - num_workers)
    return threads, (
        f"{cores} usable cores / {processes} process(es) = {share}, minus {num_workers} data-loader "
        f"worker(s); set OMP_NUM_THREADS to choose"
    )


def thread_candidates(environ: Mapping[str, str], cores: int, num_workers: int, processes: int = 1) -> List[int]:
    """The thread counts worth timing: the safe start of :func:`choose_cpu_threads` and the process's
    whole share of the cores (its workers may idle). Empty when ``OMP_NUM_THREADS`` fixes the count."""
    if environ.get("OMP_NUM_THREADS") is not None:
        return []
    safe, _ = choose_cpu_threads(environ, cores, num_workers, processes)
    return sorted({safe, max(1, cores // processes)})


class ThreadTuner:
    """Keeps the fastest of a few intra-op thread counts, measured on the training steps themselves.

    After ``warmup`` steps at the first candidate it runs ``trials`` steps at each candidate, keeps the
    one with the lowest median step time, and repeats that round every ``period`` steps, because
    another process may start or stop on the machine during a run. Feed it each step's duration with
    :meth:`record`; it answers the thread count for the next step.
    """

    def __init__(self, candidates: Sequence[int], warmup: int = 10, trials: int = 5, period: int = 500):
        if not candidates or min(candidates) < 1:
            raise ValueError(f"candidates={list(candidates)!r} must be a non-empty list of positive thread counts.")
        if warmup < 0 or trials < 1 or period < 1:
            raise ValueError(f"warmup={warmup}, trials={trials}, period={period}: need warmup >= 0, trials >= 1, period >= 1.")
        self.candidates = sorted(set(candidates))
        self.threads = self.candidates[0]
        self.trials, self.period = trials, period
        self.last_round: Dict[int, float] = {}  # thread count -> median seconds per step, of the last round
        self.decided = False  # True right after a round ended
        self._steps_to_round = warmup
        self._to_time: List[int] = []
        self._times: Dict[int, List[float]] = {}

    def record(self, seconds: float) -> int:
        """Record the duration of the step just run at ``self.threads``; return the count for the next step."""
        self.decided = False
        if len(self.candidates) == 1:
            return self.threads
        if self._to_time:
            times = self._times.setdefault(self.threads, [])
            times.append(seconds)
            if len(times) == self.trials:
                self._to_time.pop(0)
                if self._to_time:
                    self.threads = self._to_time[0]
                else:
                    self.last_round = {t: statistics.median(v) for t, v in self._times.items()}
                    self.threads = min(self.last_round, key=self.last_round.get)
                    self._steps_to_round = self.period
                    self.decided = True
        else:
            self._steps_to_round -= 1
            if self._steps_to_round <= 0:
                self._to_time, self._times = list(self.candidates), {}
                self.threads = self._to_time[0]
        return self.threads

    def summary(self) -> str:
        timed = ", ".join(f"{t} thread(s) {s:.3f} s/step" for t, s in sorted(self.last_round.items()))
        return f"timed {timed}; using {self.threads} until the next check in {self.period} steps"
