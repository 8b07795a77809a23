"""Checks of a COCO-format detection dataset before training on it.

Each problem is reported with a count and the offending ids; fatal ones stop the run with a message
saying what to fix. Nothing is dropped here: what the dataloader later drops (images without
annotations when ``filter_empty=True``) is announced, not done silently. Pure Python: no detectron2.
"""
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

# A box may stick out of its image by this many pixels (rounding in annotation tools) before it is
# reported; detectron2 clips such boxes.
OUTSIDE_TOLERANCE = 1.0
MAX_IDS_SHOWN = 10
EMPTY_IMAGE_POLICIES = ("keep", "drop", "error")


SEVERITIES = ("error", "warning", "info")


@dataclass
class Problem:
    """One kind of problem; ``severity`` "error" stops training, the others are logged."""

    kind: str
    severity: str
    ids: List = field(default_factory=list)
    what: str = ""
    fix: str = ""

    @property
    def fatal(self) -> bool:
        return self.severity == "error"

    @property
    def count(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        shown = ", ".join(str(i) for i in self.ids[:MAX_IDS_SHOWN])
        more = f" and {self.count - MAX_IDS_SHOWN} more" if self.count > MAX_IDS_SHOWN else ""
        text = f"[{self.severity.upper()}] {self.kind}: {self.count} {self.what} (ids: {shown}{more})."
        return text + (f" Fix: {self.fix}" if self.fix else "")


class DatasetValidationError(ValueError):
    """A dataset has problems that would make training wrong or crash."""


@dataclass
class ValidationReport:
    dataset: str
    num_images: int
    num_annotations: int
    problems: List[Problem] = field(default_factory=list)

    @property
    def fatal(self) -> List[Problem]:
        return [p for p in self.problems if p.fatal]

    def by_kind(self) -> Dict[str, Problem]:
        return {p.kind: p for p in self.problems}

    def summary(self) -> str:
        head = f"Dataset {self.dataset}: {self.num_images} images, {self.num_annotations} annotations"
        if not self.problems:
            return head + ": no problems found."
        return head + ". Found:\n" + "\n".join(
            "  " + p.describe() for p in self.problems
        )

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise DatasetValidationError(
                self.summary() + "\nTraining stopped: fix the ERROR lines above (or set "
                "train.validate_datasets=False to skip these checks at your own risk)."
            )


def validate_coco_json(
    json_file: str,
    image_root: Optional[str] = None,
    *,
    dataset: Optional[str] = None,
    empty_images: str = "keep",
) -> ValidationReport:
    """Check a COCO-format detection JSON file (and its images, when ``image_root`` is given).

    Args:
        empty_images: what happens to images without annotations: "keep" (negatives, reported as
            information), "drop" (reported as a warning, they will not be trained on) or "error".

    Checks: missing image files; duplicate image / annotation ids; annotations of unknown images;
    category ids not in ``categories``; boxes of zero or negative size; boxes outside their image
    (fatal when wholly outside, a warning when they stick out by more than 1 px); images without
    annotations.
    """
    if empty_images not in EMPTY_IMAGE_POLICIES:
        raise ValueError(f"empty_images={empty_images!r} must be one of {EMPTY_IMAGE_POLICIES}.")
    with open(json_file) as f:
        coco = json.load(f)
    images = coco.get("images", [])
    annotations = coco.get("annotations", [])
    category_ids = {c["id"] for c in coco.get("categories", [])}
    report = ValidationReport(dataset or json_file, len(images), len(annotations))
    add = report.problems.append

    image_counts = Counter(im["id"] for im in images)
    duplicates = sorted(i for i, n in image_counts.items() if n > 1)
    if duplicates:
        add(Problem("duplicate image ids", "error", duplicates, "image ids appear more than once",
                    "give every entry of 'images' a unique id."))
    ann_counts = Counter(a["id"] for a in annotations)
    duplicates = sorted(i for i, n in ann_counts.items() if n > 1)
    if duplicates:
        add(Problem("duplicate annotation ids", "error", duplicates, "annotation ids appear more than once",
                    "give every entry of 'annotations' a unique id."))

    if image_root is not None:
        missing = [im["id"] for im in images if not os.path.isfile(os.path.join(image_root, im["file_name"]))]
        if missing:
            add(Problem("missing image files", "error", missing, f"images have no file under {image_root}",
                        "restore the files or remove those images from the JSON."))

    images_by_id = {im["id"]: im for im in images}
    orphans, unknown_category, degenerate, outside, partly_outside = [], [], [], [], []
    for ann in annotations:
        image = images_by_id.get(ann["image_id"])
        if image is None:
            orphans.append(ann["id"])
            continue
        if ann.get("category_id") not in category_ids:
            unknown_category.append(ann["id"])
        x, y, w, h = ann["bbox"]
        if w <= 0 or h <= 0:
            degenerate.append(ann["id"])
            continue
        width, height = image["width"], image["height"]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            outside.append(ann["id"])
        elif (x < -OUTSIDE_TOLERANCE or y < -OUTSIDE_TOLERANCE
              or x + w > width + OUTSIDE_TOLERANCE or y + h > height + OUTSIDE_TOLERANCE):
            partly_outside.append(ann["id"])
    if orphans:
        add(Problem("annotations of unknown images", "error", orphans, "annotations name an image_id not in 'images'",
                    "fix their image_id or delete them."))
    if unknown_category:
        add(Problem("unknown category ids", "error", unknown_category,
                    f"annotations have a category_id not in categories {sorted(category_ids)}",
                    "add the category to 'categories' or correct the annotation's category_id."))
    if degenerate:
        add(Problem("empty boxes", "error", degenerate, "annotations have a bbox of zero or negative width/height",
                    "delete them or fix their [x, y, width, height]."))
    if outside:
        add(Problem("boxes outside the image", "error", outside, "boxes lie entirely outside their image",
                    "check the bbox format ([x, y, width, height] in pixels) and the image sizes."))
    if partly_outside:
        add(Problem("boxes partly outside the image", "warning", partly_outside,
                    f"boxes extend more than {OUTSIDE_TOLERANCE:g}px beyond their image; detectron2 clips them",
                    "clip them to the image if that is not intended."))

    annotated = {a["image_id"] for a in annotations}
    empty = [im["id"] for im in images if im["id"] not in annotated]
    if empty:
        what = {
            "keep": "images have no annotations; they are kept as negatives (background-only)",
            "drop": "images have no annotations and will be DROPPED by the dataloader (filter_empty=True)",
            "error": "images have no annotations",
        }[empty_images]
        fix = {
            "keep": "",
            "drop": "set dataloader.train.dataset.filter_empty=False to keep them as negatives.",
            "error": "annotate them or remove them from the JSON.",
        }[empty_images]
        severity = {"keep": "info", "drop": "warning", "error": "error"}[empty_images]
        add(Problem("images without annotations", severity, empty, what, fix))
    return report
