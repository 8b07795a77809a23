"""Checkpoints that cannot be lost, and loading that says, in plain words, what was loaded.

Warm-starting a method model (RetinaNet-ResObj, RetinaNet-Conf ...) from a vanilla detectron2
checkpoint leaves the new branches at their initialisation, and a different ``num_classes`` makes
the class-score layers' shapes differ. detectron2 logs both as scary warnings; this report separates
what is expected from what is not, and :meth:`CheckpointLoadReport.check_for_evaluation` decides
whether the loaded model is complete enough to be evaluated.

Saving writes a temporary file and renames it, then updates ``last_checkpoint``, so a run killed
while saving leaves the previous checkpoints intact; resuming skips an unreadable checkpoint for the
newest readable one and says so.
"""
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch

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

    def components_not_loaded(self) -> List[str]:
        """The model's top-level modules (backbone, head, proposal_generator, roi_heads ...) none of
        whose tensors came from the checkpoint: the checkpoint is of another architecture."""
        components = OrderedDict()
        for name in sorted(self.loaded + self.missing + list(self.shape_mismatch)):
            components.setdefault(name.split(".")[0], False)
        for name in self.loaded:
            components[name.split(".")[0]] = True
        return [component for component, loaded in components.items() if not loaded]

    def check_for_evaluation(self) -> None:
        """Stop an evaluation of a model that the checkpoint does not determine.

        The rule: a top-level module without any tensor from the checkpoint (a missing head,
        proposal generator or backbone) or a tensor whose shape differs from the checkpoint's (a
        class-score layer for another num_classes) would be evaluated at its random
        initialisation, which is fatal. Tensors missing inside a module that otherwise loaded are a
        new branch of a method model (RetinaNet -> RetinaNet-ResObj leaves head.obj_* and
        head.res_* new): evaluation goes on, with a warning naming them.

        Raises:
            ValueError: with the report, when the rule finds a fatal gap.
        """
        absent = self.components_not_loaded()
        if absent or self.shape_mismatch:
            reasons = []
            if absent:
                reasons.append(f"{', '.join(absent)} got no tensor from it (a checkpoint of another architecture?)")
            if self.shape_mismatch:
                reasons.append(f"{len(self.shape_mismatch)} tensors have other shapes (another num_classes?)")
            raise ValueError(
                f"Not evaluating: the checkpoint {self.source} leaves part of the model at its random "
                f"initialisation: {'; '.join(reasons)}. Pass the checkpoint of this config "
                f"(train.init_checkpoint=...), or the config that trained it.\n{self.describe()}"
            )
        if self.missing:
            logger.warning(
                f"Evaluating with {len(self.missing)} tensors at their initialisation (new branches "
                f"the checkpoint's model did not have): {', '.join(_group_by_module(self.missing))}."
            )

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


class CheckpointReadError(RuntimeError):
    """A checkpoint file that cannot be read: truncated, empty, or not a checkpoint at all.

    ``reason``: why, in a few words (the message adds the file and what to do).
    """

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class ReportingCheckpointer(DetectionCheckpointer):
    """A DetectionCheckpointer that saves atomically, resumes from the newest readable checkpoint,
    names unreadable files, and reports what each model load did.

    The :class:`CheckpointLoadReport` replaces fvcore's incompatible-keys warnings in the log and is
    kept in ``self.last_report``; ``self.resumed_from`` is the file :meth:`resume_or_load` resumed
    from (None when it did not resume). Everything else (``detectron2://`` URLs, http(s), .pkl
    conversion) is DetectionCheckpointer's.
    """

    last_report = None
    resumed_from = None

    def save(self, name: str, **kwargs) -> None:
        """Checkpointer.save, but written to ``<name>.pth.partial`` and renamed to ``<name>.pth``
        (atomic), and ``last_checkpoint`` updated only after: a run killed while saving leaves the
        previous checkpoint file and the tag pointing at it intact."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        path = os.path.join(self.save_dir, f"{name}.pth")
        logger.info(f"Saving checkpoint to {path}")
        _write_atomically(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(os.path.basename(path))

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        _write_atomically(
            os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename.encode())
        )

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Resume from the checkpoint ``last_checkpoint`` names, or, where it cannot be read, from the
        newest readable ``.pth`` in ``save_dir`` (saying which it skipped and why); without
        ``resume`` or a ``last_checkpoint``, load the model weights of ``path``.

        Raises:
            CheckpointReadError: when resuming and no checkpoint in ``save_dir`` can be read.
        """
        self.resumed_from = None
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=False)
        tagged = self.get_checkpoint_file()
        others = sorted(set(self.get_all_checkpoint_files()) - {tagged}, key=os.path.getmtime, reverse=True)
        skipped = []
        for candidate in [tagged] + others:
            try:
                extra = self.load(candidate)
            except (CheckpointReadError, FileNotFoundError) as e:
                skipped.append(f"{candidate}: {getattr(e, 'reason', 'missing')}")
                continue
            if skipped:
                logger.warning(
                    f"Resuming from {candidate}, the newest readable checkpoint in {self.save_dir}; "
                    "skipped:\n  " + "\n  ".join(skipped)
                )
            self.resumed_from = candidate
            return extra
        raise CheckpointReadError(
            f"--resume: no checkpoint in {self.save_dir} can be read:\n  " + "\n  ".join(skipped) + "\n"
            "Move them away to start afresh in this directory, or set another train.output_dir."
        )

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"Checkpoint {path!r} does not exist. Pass a local .pth/.pkl file, an http(s) URL or a "
                "detectron2:// model-zoo URL (train.init_checkpoint=...)."
            )
        self._current_source = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._parsed_url_during_load = None  # DetectionCheckpointer resets it only on success

    def _load_file(self, filename):
        try:
            checkpoint = super()._load_file(filename)
        except Exception as e:  # torch.load / pickle raise anything from KeyError to RuntimeError here
            reason = f"{type(e).__name__}: {str(e).split('. ')[0]}"
            raise CheckpointReadError(
                f"Checkpoint {filename} cannot be read ({reason}). It is truncated (e.g. a run killed "
                "while writing it, or an interrupted download) or not a PyTorch / detectron2 checkpoint. "
                "Re-create or re-download it, or pass another file as train.init_checkpoint.",
                reason,
            ) from e
        weights = checkpoint.get("model")
        if not isinstance(weights, Mapping) or not all(hasattr(v, "shape") for v in weights.values()):
            raise CheckpointReadError(
                f"Checkpoint {filename} holds no model weights (expected a state dict of tensors, alone "
                "or under 'model'). Save one with torch.save({'model': model.state_dict()}, path), or pass "
                "another file as train.init_checkpoint.",
                "no model weights in it",
            )
        return checkpoint

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


def _write_atomically(path: str, write: Callable, partial: str = "") -> None:
    """Write ``path`` through ``partial`` (default ``<path>.partial``) and a rename, so that ``path`` is
    always either the old file or the complete new one."""
    partial = partial or f"{path}.partial"
    with open(partial, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def save_backbone_checkpoint(backbone_state: Dict[str, torch.Tensor], author: str, path) -> None:
    """Write a detectron2 checkpoint that warm-starts a model's ``backbone`` (converted ImageNet weights:
    torchvision's VGG16, Darknet's Darknet-53) to ``path``, atomically through a per-process partial
    file, so ranks converting the same weights at once never read half a file."""
    checkpoint = {"model": {f"backbone.{k}": v for k, v in backbone_state.items()}, "__author__": author}
    _write_atomically(str(path), lambda f: torch.save(checkpoint, f), partial=f"{path}.{os.getpid()}.partial")


def load_checkpoint_with_report(model, path_or_url: str) -> CheckpointLoadReport:
    """Load weights (local file, http(s) or ``detectron2://`` URL) into ``model``; log and return
    the report of what was loaded, new, mismatched and unused."""
    checkpointer = ReportingCheckpointer(model)
    checkpointer.load(path_or_url)
    return checkpointer.last_report
