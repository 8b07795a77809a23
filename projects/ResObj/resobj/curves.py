"""Figs. 2 and 4 as the paper measures them: average objectness of positive and negative anchors on a
held-out dataset (COCO minival in the paper), per step t, for checkpoints along training.

At inference there are no labels, hence no gate: every anchor gets o_t = o_0 + r_1 + ... + r_t
(:func:`resobj.cascade.final_objectness`), the objectness the detector would use with
``test_objectness_step=t``. Anchors are labelled against the dataset's ground truth by the model's own
matcher (RetinaNet: IoU >= 0.5 positive, < 0.4 negative, the band between ignored), and sigmoid(o_t) is
averaged over all positive (negative) anchors of the whole dataset, pooled: an image contributes in
proportion to its anchors of that kind.

These differ from the training scalars ``train/resobj/obj_{pos,neg}_t{t}``, which are means over one
training batch of o_t in the gated training sense (an anchor outside G_t keeps o_{t-1}), computed
before the step's update. Records written here use the prefix :data:`EVAL_PREFIX`.

:class:`ObjectnessCurveAccumulator` is pure torch; the functions that run a model need detectron2.
"""
import copy
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .cascade import final_objectness

__all__ = [
    "EVAL_PREFIX",
    "ObjectnessCurveAccumulator",
    "checkpoint_iteration",
    "evaluate_objectness_curves",
    "list_checkpoints",
    "objectness_statistics",
    "write_curve_records",
]

#: Name prefix of the evaluated statistics (the training-batch ones use "train/resobj/").
EVAL_PREFIX = "eval_objectness/"


class ObjectnessCurveAccumulator:
    """Pooled mean of sigmoid(o_t), t = 0..T, over the positive and the negative anchors of many batches.

    Args:
        num_steps: T, the number of residual steps.
    """

    def __init__(self, num_steps: int):
        if num_steps < 0:
            raise ValueError(f"num_steps={num_steps} must be >= 0.")
        self.num_steps = num_steps
        # float64 sums: a dataset has ~1e7-1e9 negative anchors, beyond float32's exact integers.
        self.pos_sum = torch.zeros(num_steps + 1, dtype=torch.float64)
        self.neg_sum = torch.zeros(num_steps + 1, dtype=torch.float64)
        self.num_pos = 0
        self.num_neg = 0

    @torch.no_grad()
    def update(self, objectness: Tensor, residuals: Sequence[Tensor], labels: Tensor) -> None:
        """Add one batch.

        Args:
            objectness: (N, R) logits o_0.
            residuals: T tensors (N, R), the logits r_1..r_T.
            labels: (N, R) anchor labels, 1 positive, 0 negative, -1 ignored.
        """
        if len(residuals) != self.num_steps:
            raise ValueError(f"got {len(residuals)} residual tensors for an accumulator of T={self.num_steps}.")
        assert labels.shape == objectness.shape, (tuple(labels.shape), tuple(objectness.shape))
        positive, negative = labels == 1, labels == 0
        for t in range(self.num_steps + 1):
            score = torch.sigmoid(final_objectness(objectness, residuals, step=t).double())
            self.pos_sum[t] += score[positive].sum().cpu()
            self.neg_sum[t] += score[negative].sum().cpu()
        self.num_pos += int(positive.sum())
        self.num_neg += int(negative.sum())

    def result(self) -> Dict[str, float]:
        """{"obj_pos_t{t}", "obj_neg_t{t}" (t = 0..T), "num_pos", "num_neg"}.

        Raises:
            ValueError: when no positive or no negative anchor was seen (the means are undefined).
        """
        if self.num_pos == 0 or self.num_neg == 0:
            raise ValueError(
                f"no {'positive' if self.num_pos == 0 else 'negative'} anchors were seen; evaluate on a "
                "dataset with ground-truth boxes (a test mapper that keeps the annotations)."
            )
        out = {}
        for t in range(self.num_steps + 1):
            out[f"obj_pos_t{t}"] = float(self.pos_sum[t] / self.num_pos)
            out[f"obj_neg_t{t}"] = float(self.neg_sum[t] / self.num_neg)
        out["num_pos"] = float(self.num_pos)
        out["num_neg"] = float(self.num_neg)
        return out


@torch.no_grad()
def objectness_statistics(model, batches) -> Dict[str, float]:
    """Pooled positive / negative objectness per step of a RetinaNet-ResObj over a dataset.

    Args:
        model: a :class:`resobj.RetinaNetResObj` (any device); used in eval mode, its mode restored.
        batches: an iterable of lists of dataset dicts with "image" (C, H, W) and "instances" holding
            gt_boxes / gt_classes in the coordinates of "image" (a mapper that keeps the annotations).

    Returns:
        :meth:`ObjectnessCurveAccumulator.result` plus "num_images".
    """
    from detectron2.layers import cat

    from .meta_arch import RetinaNetResObj

    if not isinstance(model, RetinaNetResObj):
        raise ValueError(f"objectness curves need a RetinaNetResObj model, got {type(model).__name__}.")
    accumulator = ObjectnessCurveAccumulator(model.num_steps)
    was_training = model.training
    model.eval()
    num_images = 0
    try:
        for batch in batches:
            if any("instances" not in x for x in batch):
                raise ValueError("every dataset dict needs 'instances' (ground truth) to label the anchors.")
            images = model.preprocess_image(batch)
            features = model.backbone(images.tensor)
            features = [features[f] for f in model.head_in_features]
            _, _, objectness, residuals = model._split_predictions(model.head(features))
            anchors = model.anchor_generator(features)
            gt_labels, _ = model.label_anchors(anchors, [x["instances"].to(model.device) for x in batch])
            gt_labels = torch.stack(gt_labels)  # (N, R) in {-1, 0..K-1, K}
            labels = torch.where(gt_labels == model.num_classes, 0, 1)
            labels = torch.where(gt_labels < 0, -1, labels)
            accumulator.update(
                cat(objectness, dim=1).squeeze(2), [cat(r, dim=1).squeeze(2) for r in residuals], labels
            )
            num_images += len(batch)
    finally:
        model.train(was_training)
    stats = accumulator.result()
    stats["num_images"] = float(num_images)
    return stats


_ITERATION_IN_NAME = re.compile(r"_(\d+)\.pth$")


def checkpoint_iteration(path: str, checkpoint: Optional[dict] = None) -> int:
    """The training iteration of a detectron2 checkpoint: its stored "iteration" (the index of the last
    iteration done, as in metrics.json), else the number in ``model_0000499.pth``.

    Raises:
        ValueError: when neither gives one.
    """
    if checkpoint is not None and "iteration" in checkpoint:
        return int(checkpoint["iteration"])
    match = _ITERATION_IN_NAME.search(os.path.basename(path))
    if match is None:
        raise ValueError(
            f"{path} stores no 'iteration' and its name has none (model_<iteration>.pth); pass checkpoints "
            "written by train_net.py."
        )
    return int(match.group(1))


def list_checkpoints(paths: Sequence[str]) -> List[str]:
    """Expand directories into their ``model_*.pth`` files (sorted by name, model_final last).

    Raises:
        ValueError: for a path that does not exist or a directory without checkpoints.
    """
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(f for f in os.listdir(path) if f.startswith("model_") and f.endswith(".pth"))
            found = [f for f in found if f != "model_final.pth"] + [f for f in found if f == "model_final.pth"]
            if not found:
                raise ValueError(f"{path} holds no model_*.pth checkpoint; pass a train.output_dir of a run.")
            out += [os.path.join(path, f) for f in found]
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ValueError(f"checkpoint {path!r} does not exist.")
    return out


def evaluate_objectness_curves(
    cfg,
    checkpoints: Sequence[str],
    *,
    dataset: Optional[str] = None,
    max_images: Optional[int] = None,
    device: str = "cpu",
) -> List[Tuple[int, Dict[str, float]]]:
    """Figs. 2/4 for a run: the statistics of :func:`objectness_statistics` for each checkpoint.

    Args:
        cfg: a LazyConfig of a RetinaNet-ResObj (``model`` and ``dataloader.test``; the test mapper's
            augmentations give the resolution, as at evaluation).
        checkpoints: checkpoint files or run directories (see :func:`list_checkpoints`).
        dataset: a registered dataset with annotations (default: the config's test dataset).
        max_images: use only the first images of the dataset (default: all).

    Returns:
        (iteration, statistics) per distinct iteration, sorted by iteration.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    from d2imbalance.data.datasets import prepare_datasets, register_coco_datasets

    register_coco_datasets(cfg.train.get("datasets", []) if "train" in cfg else [])
    if dataset is None:
        dataset = cfg.dataloader.test.dataset.names
        dataset = dataset if isinstance(dataset, str) else dataset[0]
    if dataset not in DatasetCatalog.list():
        raise ValueError(f"Dataset {dataset!r} is not registered; registered: {sorted(DatasetCatalog.list())[:20]} ...")
    prepare_datasets([dataset])
    files = list_checkpoints(checkpoints)
    loader_cfg = copy.deepcopy(cfg.dataloader)  # the whole tree, so ${...} interpolations resolve
    loader_cfg.test.mapper.is_train = True  # keep the annotations; the augmentations stay the test ones
    loader_cfg.test.mapper.use_instance_mask = False
    mapper = instantiate(loader_cfg.test.mapper)
    records = DatasetCatalog.get(dataset)[:max_images]
    batches = [[mapper(copy.deepcopy(r))] for r in records]  # mapped once, reused by every checkpoint

    model = instantiate(cfg.model).to(device)
    results = {}
    for path in files:
        iteration = checkpoint_iteration(path, DetectionCheckpointer(model).load(path))
        if iteration not in results:  # model_final.pth repeats the last periodic checkpoint
            results[iteration] = objectness_statistics(model, batches)
    return sorted(results.items())


def write_curve_records(results: Sequence[Tuple[int, Dict[str, float]]], path: str, prefix: str = EVAL_PREFIX) -> str:
    """Write one JSON object per checkpoint, {"iteration": i, "<prefix><key>": value, ...}: the line format
    of detectron2's metrics.json, so :func:`resobj.visualize.read_objectness_curves` reads both."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for iteration, stats in results:
            record = {"iteration": iteration}
            record.update({prefix + k: v for k, v in stats.items()})
            f.write(json.dumps(record) + "\n")
    return path
