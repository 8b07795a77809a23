"""Resuming a training run where it stopped: the data stream and the learning-rate schedule.

detectron2's training loader groups images by aspect ratio *after* loading them, in whatever order
the workers deliver, so the batches of a run cannot be replayed without loading every image again,
and ``--resume`` restarts the stream: the first images are seen twice. Here the batches are formed
from the sampler's indices before any image is loaded (the same grouping: width > height or not),
which makes the batch stream a function of the sampler's seed alone; a resumed run re-creates it
with the seed stored in the checkpoint and skips the batches already trained on, touching only
indices.

Each checkpoint also records ``train.max_iter``: the schedules are functions of iteration /
max_iter, so resuming with another max_iter re-stretches the remaining schedule, and train_net says
by how much.
"""
import itertools
import logging
from typing import List, Mapping, Optional, Tuple

from ._compat import require_detectron2

require_detectron2("d2imbalance.resume")
import torch.utils.data as torchdata  # noqa: E402
from detectron2.data.build import trivial_batch_collator, worker_init_reset_seed  # noqa: E402
from detectron2.data.common import DatasetFromList, MapDataset  # noqa: E402
from detectron2.data.samplers import GroupedBatchSampler, TrainingSampler  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from fvcore.common.param_scheduler import ParamScheduler  # noqa: E402

logger = logging.getLogger("d2imbalance")

__all__ = ["RunRecord", "build_resumable_train_loader", "data_stream_start", "max_iter_change"]

# A resumed run continues the data stream only where these match the checkpoint's run.
STREAM_FIELDS = ("dataset_size", "total_batch_size", "world_size")


class RunRecord:
    """What a resumed run is checked against, saved in each checkpoint under ``"run"``.

    ``current``: this run's ``max_iter``, ``data_seed`` and :data:`STREAM_FIELDS`, set by train_net
    before training. ``saved``: the record of the checkpoint resumed from (None when not resumed,
    or the checkpoint predates these records).
    """

    def __init__(self):
        self.current = {}
        self.saved = None

    def state_dict(self) -> dict:
        return dict(self.current)

    def load_state_dict(self, state: Mapping) -> None:
        self.saved = dict(state)


def data_stream_start(saved: Optional[Mapping], current: Mapping, start_iter: int) -> Tuple[int, Optional[str]]:
    """(batches of the stream to skip, warning or None) for a run starting at ``start_iter``.

    The stream continues (``start_iter`` batches skipped, each iteration having taken one batch)
    when the checkpoint's record matches this run in :data:`STREAM_FIELDS`; otherwise it restarts.
    """
    if start_iter == 0:
        return 0, None
    if saved is None:
        return 0, (
            "The checkpoint has no record of its run (saved by an older version of d2imbalance): "
            "the data order restarts from its beginning, so the first images are seen again, and a "
            "changed train.max_iter cannot be detected."
        )
    changed = [f"{k} {saved.get(k)} -> {current[k]}" for k in STREAM_FIELDS if saved.get(k) != current[k]]
    if changed:
        return 0, (
            f"This run differs from the checkpoint's in {', '.join(changed)}: the data order restarts "
            "from its beginning (with the checkpoint's seed)."
        )
    return start_iter, None


def max_iter_change(saved_max_iter: int, max_iter: int, start_iter: int, scheduler) -> Optional[str]:
    """A warning when ``train.max_iter`` differs from the checkpoint's run, saying what it does to
    the schedule (``scheduler``: the config's lr_multiplier, a function of iteration / max_iter)."""
    if saved_max_iter == max_iter:
        return None
    text = (
        f"train.max_iter={max_iter} differs from the checkpoint's run (train.max_iter={saved_max_iter}). "
        "The learning-rate schedule is a function of iteration / max_iter, so from iteration "
        f"{start_iter} on it follows the {max_iter}-iteration schedule"
    )
    if start_iter >= max_iter:
        text += f"; the checkpoint is already at iteration {start_iter}, so nothing is left to train"
    elif isinstance(scheduler, ParamScheduler):  # start_iter <= saved_max_iter: the checkpoint's run got there
        text += (
            f": the lr multiplier at iteration {start_iter} becomes {scheduler(start_iter / max_iter):.4g} "
            f"(the original run's: {scheduler(start_iter / saved_max_iter):.4g}), and every step of the "
            f"schedule moves to the same fraction of {max_iter}"
        )
    return text + f". Pass train.max_iter={saved_max_iter} to keep the original schedule."


class _SkipFirst:
    """An iterable of batches without its first ``n`` (a batch_sampler for DataLoader)."""

    def __init__(self, batches, n: int):
        self.batches, self.n = batches, n

    def __iter__(self):
        return itertools.islice(iter(self.batches), self.n, None)


def build_resumable_train_loader(
    dataset: List[dict],
    *,
    mapper,
    total_batch_size: int,
    sampler=None,
    aspect_ratio_grouping: bool = True,
    num_workers: int = 0,
    collate_fn=None,
    data_seed: Optional[int] = None,
    skip_batches: int = 0,
    **kwargs,
):
    """detectron2's ``build_detection_train_loader`` (same arguments) for a list of dataset dicts,
    batching indices before loading, so that the stream can be resumed.

    Args:
        data_seed: seed of the default sampler (a TrainingSampler); ignored when ``sampler`` is
            given. None: a seed shared by all processes, as detectron2.
        skip_batches: batches of this process's stream to skip (the iterations already trained).
        kwargs: passed to torch's DataLoader (e.g. ``pin_memory``, ``prefetch_factor``).

    Returns:
        a DataLoader yielding lists of ``total_batch_size / world_size`` mapped dicts, forever.
    """
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"dataloader.train.total_batch_size={total_batch_size} must be a positive multiple of the "
            f"number of processes ({world_size})."
        )
    batch_size = total_batch_size // world_size
    if sampler is None:
        sampler = TrainingSampler(len(dataset), seed=data_seed)
    if aspect_ratio_grouping:
        group_ids = [0 if d["width"] > d["height"] else 1 for d in dataset]  # AspectRatioGroupedDataset's rule
        batches = GroupedBatchSampler(sampler, group_ids, batch_size)
    else:
        batches = torchdata.BatchSampler(sampler, batch_size, drop_last=True)
    dataset = DatasetFromList(dataset)  # serialized: workers do not copy-on-read the dicts
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    return torchdata.DataLoader(
        dataset,
        batch_sampler=_SkipFirst(batches, skip_batches),
        num_workers=num_workers,
        collate_fn=trivial_batch_collator if collate_fn is None else collate_fn,
        worker_init_fn=worker_init_reset_seed,
        **kwargs,
    )
