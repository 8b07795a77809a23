"""How many intra-op threads a CPU training process gives torch.

torch's default is one thread per core. Its OpenMP threads busy-wait for each other at the end of
every parallel region, so when another process (or this run's own data-loader workers) holds one of
the cores, a thread waits for one that is not running and every layer stalls: one training step of
the shapes RetinaNet-ResObj (4 images) took 11.4-13.1 s with 2 threads and 2.3-3.1 s with 1 thread
on a 2-core machine under a load of 4-8. train_net therefore leaves a core to each data-loader
worker and splits the rest between the processes of the machine, unless the user chose with
``OMP_NUM_THREADS``.
"""
import os
from typing import Mapping, Tuple

__all__ = ["available_cores", "choose_cpu_threads"]


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
