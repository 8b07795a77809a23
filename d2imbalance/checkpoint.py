"""Checkpoint loading that says, in plain words, what was loaded and what was not.

Warm-starting a method model (RetinaNet-ResObj, RetinaNet-Conf ...) from a vanilla detectron2
checkpoint leaves the new branches at their initialisation, and a different ``num_classes`` makes
the class-score layers' shapes differ. detectron2 logs both as scary warnings; this report separates
what is expected from what is not.
"""
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from ._compat import require_detectron2

require_detectron2("d2imbalance.checkpoint")
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class CheckpointLoadReport:
    """What loading a checkpoint into a model did, by parameter/buffer name.

    Attributes:
        loaded: names whose values came from the checkpoint.
        missing: names in the model but not in the checkpoint (new branches keep their init).
        shape_mismatch: name -> (checkpoint shape, model shape); kept at their init.
        unexpected: names in the checkpoint that this model does not have.
    """

    source: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    shape_mismatch: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)

    def describe(self) -> str:
        total = len(self.loaded) + len(self.missing) + len(self.shape_mismatch)
        lines = [f"Loaded {len(self.loaded)} of the model's {total} tensors from {self.source}."]
        if self.missing:
            lines.append(
                f"New in this model, not in the checkpoint ({len(self.missing)} tensors; expected for "
                "branches the checkpoint's model did not have, they keep their initialisation):"
            )
            lines += [f"  {module}: {n} tensors" for module, n in _group_by_module(self.missing).items()]
        if self.shape_mismatch:
            lines.append(
                f"Not loaded because the shapes differ ({len(self.shape_mismatch)} tensors; usually a "
                "different num_classes or number of anchors; they keep their initialisation):"
            )
            lines += [
                f"  {name}: checkpoint {tuple(ckpt)} vs model {tuple(model)}"
                for name, (ckpt, model) in self.shape_mismatch.items()
            ]
        if self.unexpected:
            lines.append(f"In the checkpoint but not used by this model ({len(self.unexpected)} tensors):")
            lines += [f"  {module}: {n} tensors" for module, n in _group_by_module(self.unexpected).items()]
        return "\n".join(lines)


def _group_by_module(names: List[str]) -> "OrderedDict[str, int]":
    groups: "OrderedDict[str, int]" = OrderedDict()
    for name in sorted(names):
        module = name.rsplit(".", 1)[0] if "." in name else name
        groups[module] = groups.get(module, 0) + 1
    return groups


class ReportingCheckpointer(DetectionCheckpointer):
    """A DetectionCheckpointer whose model loads produce a :class:`CheckpointLoadReport`.

    The report replaces fvcore's incompatible-keys warnings in the log and is kept in
    ``self.last_report``. Everything else (``detectron2://`` URLs, http(s), .pkl conversion,
    ``resume_or_load``) is DetectionCheckpointer's.
    """

    last_report = None

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"Checkpoint {path!r} does not exist. Pass a local .pth/.pkl file, an http(s) URL or a "
                "detectron2:// model-zoo URL (train.init_checkpoint=...)."
            )
        self._current_source = path
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        mismatched = {k: (tuple(ckpt), tuple(model)) for k, ckpt, model in incompatible.incorrect_shapes}
        missing = [k for k in incompatible.missing_keys if k not in mismatched]
        not_loaded = set(missing) | set(mismatched)
        self.last_report = CheckpointLoadReport(
            source=getattr(self, "_current_source", "checkpoint"),
            loaded=[k for k in self.model.state_dict() if k not in not_loaded],
            missing=missing,
            shape_mismatch=mismatched,
            unexpected=list(incompatible.unexpected_keys),
        )
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        logger.info(self.last_report.describe())


def load_checkpoint_with_report(model, path_or_url: str) -> CheckpointLoadReport:
    """Load weights (local file, http(s) or ``detectron2://`` URL) into ``model``; log and return
    the report of what was loaded, new, mismatched and unused."""
    checkpointer = ReportingCheckpointer(model)
    checkpointer.load(path_or_url)
    return checkpointer.last_report
