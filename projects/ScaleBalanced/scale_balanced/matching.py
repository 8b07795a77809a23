"""Keep what detectron2's labelling functions compute and then discard (no detectron2 import).

detectron2's ``RetinaNet.label_anchors``, ``RPN.label_and_sample_anchors`` and
``ROIHeads.label_and_sample_proposals`` call their matcher once per image and drop the per-anchor
matched ground-truth index after using it. The scale-balanced loss needs exactly that index, so instead
of copying those functions we wrap the matcher while the parent's function runs and record its outputs:
the matching is done once, and the parent's code (with its upstream fixes) stays in charge.
"""
import contextlib
from typing import Any, Callable, Iterator, List, Optional, Tuple

from torch import Tensor

__all__ = ["RecordingCallable", "record_calls", "record_matches"]


class RecordingCallable:
    """Calls ``fn`` and appends each return value to ``self.outputs`` (in call order).

    Attribute access is forwarded to ``fn``, so code reading e.g. ``matcher.labels`` keeps working.

    Args:
        fn: the callable to wrap.
        keep: applied to each return value before it is recorded (e.g. to copy tensors that the
            caller later modifies in place).
    """

    def __init__(self, fn: Callable, keep: Optional[Callable[[Any], Any]] = None):
        self.fn = fn
        self.keep = keep
        self.outputs: List[Any] = []

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        self.outputs.append(out if self.keep is None else self.keep(out))
        return out

    def __getattr__(self, name):
        return getattr(self.fn, name)


@contextlib.contextmanager
def record_calls(owner: Any, attr: str, keep: Optional[Callable[[Any], Any]] = None) -> Iterator[List[Any]]:
    """Within the block, ``owner.<attr>`` records its return values into the yielded list.

    The original attribute is restored on exit, also when the block raises. Works for plain
    attributes (a ``Matcher`` instance) and for bound methods (restored by deleting the instance
    attribute that shadows the class's method).
    """
    had_instance_attr = attr in vars(owner)
    original = getattr(owner, attr)
    recorder = RecordingCallable(original, keep)
    object.__setattr__(owner, attr, recorder)
    try:
        yield recorder.outputs
    finally:
        if had_instance_attr:
            object.__setattr__(owner, attr, original)
        else:
            object.__delattr__(owner, attr)


def _copy_labels(out: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
    matched_idxs, labels = out
    # RPN.label_and_sample_anchors subsamples the matcher's label tensor in place; keep the original.
    return matched_idxs, labels.clone()


def record_matches(owner: Any, attr: str = "anchor_matcher"):
    """``record_calls`` for a detectron2 ``Matcher``: yields a list of ``(matched_idxs, labels)``,
    one pair per image, both (R,) tensors (R anchors or proposals of that image), where labels are
    the matcher's own {-1, 0, 1} (copied: later in-place edits by the caller do not reach them)."""
    return record_calls(owner, attr, keep=_copy_labels)

