"""Checks of a COCO-format detection dataset before training on it.

Everything that would otherwise crash detectron2 in the middle of a run (or, for a test set, after
training), or quietly change what it trains on, is found here first: each problem is reported with a
count, the offending image / annotation ids with what is wrong with each, and the fix; fatal ones stop
the run. Nothing is dropped here: what the dataloader later drops (images without annotations when
``filter_empty=True``) is announced, not done silently.

Image files are checked through their headers by default (the file exists, is not empty, is an image,
and has the width/height the JSON gives, after EXIF rotation as detectron2's ``read_image`` applies
it): cheap, since PIL's ``Image.open`` reads only the header. Decoding every image, which also finds
truncated or corrupt pixel data, is optional (``decode_images=True``). No detectron2 needed.
"""
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from PIL import Image

# A box may stick out of its image by this many pixels (rounding in annotation tools) before it is
# reported; detectron2 clips such boxes.
OUTSIDE_TOLERANCE = 1.0
MAX_IDS_SHOWN = 10
EMPTY_IMAGE_POLICIES = ("keep", "drop", "error")
SEVERITIES = ("error", "warning", "info")
_EXIF_ORIENTATION = 0x0112
# EXIF orientations that turn the image by 90 degrees, so detectron2 sees width and height swapped.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass
class Problem:
    """One kind of problem; ``severity`` "error" stops training, the others are logged.

    ``ids`` are the offending image / annotation ids (or ``images[i]``-style positions for entries
    without a usable id); ``details[i]`` says what is wrong with ``ids[i]`` ("" when the kind says it all).
    """

    kind: str
    severity: str
    ids: List = field(default_factory=list)
    what: str = ""
    fix: str = ""
    details: List[str] = field(default_factory=list)

    def add(self, item_id, detail: str = "") -> None:
        self.ids.append(item_id)
        self.details.append(detail)

    @property
    def fatal(self) -> bool:
        return self.severity == "error"

    @property
    def count(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        shown = ", ".join(
            f"{i} ({d})" if d else str(i) for i, d in zip(self.ids[:MAX_IDS_SHOWN], self.details)
        )
        more = f" and {self.count - MAX_IDS_SHOWN} more" if self.count > MAX_IDS_SHOWN else ""
        text = f"[{self.severity.upper()}] {self.kind}: {self.count} {self.what} (ids: {shown}{more})."
        return text + (f" Fix: {self.fix}" if self.fix else "")


class DatasetValidationError(ValueError):
    """A dataset has problems that would make training wrong or crash."""


@dataclass
class ValidationReport:
    dataset: Optional[str]  # the name shown; None: the file's path alone names it
    json_file: str
    num_images: int = 0
    num_annotations: int = 0
    problems: List[Problem] = field(default_factory=list)

    @property
    def fatal(self) -> List[Problem]:
        return [p for p in self.problems if p.fatal]

    def by_kind(self) -> Dict[str, Problem]:
        return {p.kind: p for p in self.problems}

    def summary(self) -> str:
        name = f"{self.dataset} ({self.json_file})" if self.dataset else self.json_file
        head = f"Dataset {name}: {self.num_images} images, {self.num_annotations} annotations"
        if not self.problems:
            return head + ": no problems found."
        return head + ". Found:\n" + "\n".join("  " + p.describe() for p in self.problems)

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise DatasetValidationError(
                self.summary() + "\nTraining stopped: fix the ERROR lines above (or set "
                "train.validate_datasets=False to skip these checks at your own risk)."
            )


def _empty_image_problem(empty_images: str, no_objects: str, error_fix: str) -> Tuple[str, str, str]:
    """(severity, what, fix) of the images without objects under an ``empty_images`` policy; shared by
    the COCO and VOC checks. ``no_objects``: e.g. "images have no annotations"."""
    return {
        "keep": ("info", f"{no_objects}; they are kept as negatives (background-only)", ""),
        "drop": (
            "warning",
            f"{no_objects} and will be DROPPED by the dataloader (filter_empty=True)",
            "set filter_empty=False in this dataloader's dataset to keep them as negatives.",
        ),
        "error": ("error", no_objects, error_fix),
    }[empty_images]


def _problem_kinds(image_root, category_ids, empty_images: str) -> Dict[str, Tuple[str, str, str]]:
    """kind -> (severity, what, fix), in the order the report lists them."""
    empty = _empty_image_problem(
        empty_images, "images have no annotations", "annotate them or remove them from the JSON."
    )
    bbox_format = "[x, y, width, height] in pixels"
    return {
        "unreadable file": (
            "error", "annotation file cannot be read as JSON",
            "check the dataset's json_file path, and that the file is JSON (python -m json.tool FILE "
            "shows where it is not).",
        ),
        "malformed file": (
            "error", "parts of the file do not have COCO's layout",
            "the file must be a JSON object whose 'images', 'annotations' and 'categories' are lists.",
        ),
        "no images": (
            "error", "list of images is empty (detectron2 refuses an empty dataset)",
            "check that json_file is this split's annotation file.",
        ),
        "malformed image entries": (
            "error", "image entries lack a field or have one of the wrong type",
            "each image needs an integer or string 'id', a 'file_name', and 'width' / 'height' as "
            "positive integers.",
        ),
        "malformed annotation entries": (
            "error", "annotation entries lack a field or have one of the wrong type",
            "each annotation needs integer or string 'id', 'image_id' and 'category_id', and a 'bbox'.",
        ),
        "malformed category entries": (
            "error", "category entries lack an integer or string 'id'", "give every category an 'id'.",
        ),
        "malformed boxes": (
            "error", f"annotations have a bbox that is not four numbers {bbox_format}",
            f"write each bbox as {bbox_format}.",
        ),
        "non-finite boxes": (
            "error", "annotations have a bbox with NaN or infinite values "
            "(detectron2 would drop them without a word)", "fix or delete those annotations.",
        ),
        "duplicate image ids": (
            "error", "image ids appear more than once", "give every entry of 'images' a unique id.",
        ),
        "duplicate annotation ids": (
            "error", "annotation ids appear more than once",
            "give every entry of 'annotations' a unique id.",
        ),
        "annotations of unknown images": (
            "error", "annotations name an image_id not in 'images'", "fix their image_id or delete them.",
        ),
        "unknown category ids": (
            "error", f"annotations have a category_id not in categories {sorted(category_ids, key=str)}",
            "add the category to 'categories' or correct the annotation's category_id.",
        ),
        "'ignore' annotations": (
            "error", "annotations have a non-zero 'ignore' field, which detectron2's COCO loader rejects",
            "remove the field; mark objects to leave out of evaluation with iscrowd=1 instead.",
        ),
        "empty boxes": (
            "error", "annotations have a bbox of zero or negative width/height",
            f"delete them or fix their {bbox_format}.",
        ),
        "boxes outside the image": (
            "error", "boxes lie entirely outside their image",
            f"check the bbox format ({bbox_format}) and the image sizes.",
        ),
        "boxes partly outside the image": (
            "warning", f"boxes extend more than {OUTSIDE_TOLERANCE:g}px beyond their image; detectron2 clips them",
            "clip them to the image if that is not intended.",
        ),
        "fields COCOeval needs": (
            "error", "annotations of this evaluated dataset lack a finite numeric 'area' or an 'iscrowd' "
            "of 0 or 1, which COCOeval reads (it would fail, or ignore the object, after training)",
            "add 'area' (the object's area in pixels; width * height for a box) and 'iscrowd': 0.",
        ),
        "missing image files": (
            "error", f"images have no file under {image_root}",
            "restore the files or remove those images from the JSON.",
        ),
        "empty image files": (
            "error", "image files are empty (0 bytes)", "restore the files or remove those images from the JSON.",
        ),
        "unreadable image files": (
            "error", "image files are not images PIL can open (detectron2 reads images with PIL)",
            "re-export them as JPEG or PNG, or remove those images from the JSON.",
        ),
        "image sizes disagree with the JSON": (
            "error", "images' width/height in the JSON differ from their files "
            "(after EXIF rotation; detectron2 stops with SizeMismatchError)",
            "set each image's 'width' and 'height' in the JSON to the file's size.",
        ),
        "undecodable image files": (
            "error", "image files have headers but their pixel data cannot be decoded (truncated or corrupt)",
            "re-export or restore them, or remove those images from the JSON.",
        ),
        "images without annotations": empty,
    }


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _image_entry_error(image) -> str:
    """What is wrong with one entry of 'images' ("" when it is usable)."""
    if not isinstance(image, dict):
        return f"{image!r} is not an object"
    missing = [key for key in ("id", "file_name", "width", "height") if key not in image]
    if missing:
        return "no " + ", ".join(repr(key) for key in missing)
    if not _is_id(image["id"]):
        return f"id={image['id']!r}"
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        return f"file_name={image['file_name']!r}"
    for key in ("width", "height"):
        value = image[key]
        if not (_is_number(value) and value > 0 and float(value).is_integer()):
            return f"{key}={value!r}"
    return ""


def _annotation_entry_error(annotation) -> str:
    """What is wrong with one entry of 'annotations', its bbox aside ("" when it is usable)."""
    if not isinstance(annotation, dict):
        return f"{annotation!r} is not an object"
    missing = [key for key in ("id", "image_id", "category_id", "bbox") if key not in annotation]
    if missing:
        return "no " + ", ".join(repr(key) for key in missing)
    for key in ("id", "image_id", "category_id"):
        if not _is_id(annotation[key]):
            return f"{key}={annotation[key]!r}"
    return ""


def _box_kind(bbox) -> str:
    """"malformed boxes" / "non-finite boxes" for a bad bbox, "" for four finite numbers."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return "malformed boxes"
    if not all(math.isfinite(v) for v in bbox):
        return "non-finite boxes"
    return ""


def _fails_cocoeval(annotation) -> str:
    """Why COCOeval cannot score this annotation ("" when it can)."""
    area = annotation.get("area")
    if not (_is_number(area) and math.isfinite(area)):
        return f"area={area!r}"
    if annotation.get("iscrowd") not in (0, 1):
        return f"iscrowd={annotation.get('iscrowd')!r}"
    return ""


def _error_text(path: str, error: Exception) -> str:
    """PIL's message, prefixed with the path unless it names it already."""
    return str(error) if path in str(error) else f"{path}: {error}"


def _image_file_problem(path: str, width, height, decode: bool, source: str = "JSON") -> Tuple[str, str]:
    """(kind, detail) of what is wrong with an image file, ("", "") when nothing is; ``source`` names
    the annotation format that gave ``width`` / ``height`` (the VOC validator's is "XML")."""
    if not os.path.isfile(path):
        return "missing image files", path
    if os.path.getsize(path) == 0:
        return "empty image files", path
    try:
        image = Image.open(path)  # reads the header only
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for non-images and broken headers
        return "unreadable image files", _error_text(path, e)
    with image:
        try:
            # The base class's getexif reads what the header holds; PNG's override would decode the file.
            orientation = Image.Image.getexif(image).get(_EXIF_ORIENTATION)
        except Exception:  # detectron2's read_image also treats unreadable EXIF as none
            orientation = None
        file_size = image.size[::-1] if orientation in _TRANSPOSING_ORIENTATIONS else image.size
        if file_size != (width, height):
            return f"image sizes disagree with the {source}", (
                f"{path}: {source} {width:g}x{height:g}, file {file_size[0]}x{file_size[1]} (width x height)"
            )
        if decode:
            try:
                image.load()
            except (OSError, SyntaxError, ValueError) as e:
                return "undecodable image files", _error_text(path, e)
    return "", ""


def _load_json(json_file: str):
    """(the parsed file, "") or (None, why it cannot be read)."""
    try:
        with open(json_file, "rb") as f:
            return json.load(f), ""
    except OSError as e:
        return None, f"cannot be read: {e.strerror or e}"
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        return None, f"is not JSON: {e}"


def validate_coco_json(
    json_file: str,
    image_root: Optional[str] = None,
    *,
    dataset: Optional[str] = None,
    empty_images: str = "keep",
    decode_images: bool = False,
    evaluated: bool = False,
) -> ValidationReport:
    """Check a COCO-format detection JSON file (and its images, when ``image_root`` is given).

    Args:
        json_file: the COCO-format annotation file.
        image_root: directory the images' ``file_name`` are relative to; None skips the file checks.
        dataset: the name the report uses (e.g. the registered dataset name).
        empty_images: what happens to images without annotations: "keep" (negatives, reported as
            information), "drop" (reported as a warning, they will not be trained on) or "error".
        decode_images: also decode every image (slow: finds truncated or corrupt pixel data, which
            header checks cannot).
        evaluated: the dataset is scored by COCOeval (a test set), which also needs each annotation's
            ``area`` and ``iscrowd``.

    Checks: the file is readable JSON with COCO's layout; every image / annotation / category entry
    has the fields detectron2 reads, with usable types; every bbox is four finite numbers; duplicate
    image / annotation ids; annotations of unknown images; category ids not in ``categories``;
    annotations with an ``ignore`` field; boxes of zero or negative size; boxes outside their image
    (fatal when wholly outside, a warning when they stick out by more than 1 px); image files missing,
    empty, unreadable, of another size than the JSON says, or (with ``decode_images``) undecodable;
    images without annotations.
    """
    if empty_images not in EMPTY_IMAGE_POLICIES:
        raise ValueError(f"empty_images={empty_images!r} must be one of {EMPTY_IMAGE_POLICIES}.")
    report = ValidationReport(dataset, json_file)
    coco, unreadable = _load_json(json_file)
    sections = {}
    if not unreadable and isinstance(coco, dict):
        sections = {key: coco.get(key, []) for key in ("images", "annotations", "categories")}
    categories = sections.get("categories") if isinstance(sections.get("categories"), list) else []
    category_ids = {c["id"] for c in categories if isinstance(c, dict) and _is_id(c.get("id"))}
    kinds = _problem_kinds(image_root, category_ids, empty_images)
    found: Dict[str, Problem] = {}

    def add(kind: str, item_id, detail: str = "") -> None:
        if kind not in found:
            severity, what, fix = kinds[kind]
            found[kind] = Problem(kind, severity, what=what, fix=fix)
        found[kind].add(item_id, detail)

    if unreadable:
        add("unreadable file", json_file, unreadable)
    elif not isinstance(coco, dict):
        add("malformed file", json_file, f"the top level is a JSON {type(coco).__name__}, not an object")
    for key, value in sections.items():
        if not isinstance(value, list):
            add("malformed file", key, f"{key!r} is a {type(value).__name__}, not a list")
    if not found:
        _check_entries(sections, category_ids, image_root, add, decode_images, evaluated)
        report.num_images = len(sections["images"])
        report.num_annotations = len(sections["annotations"])
    report.problems = [found[kind] for kind in kinds if kind in found]
    return report


def _check_entries(sections, category_ids, image_root, add, decode_images, evaluated) -> None:
    """The checks of a file with COCO's layout; ``add(kind, id, detail)`` records each problem."""
    images, annotations, categories = sections["images"], sections["annotations"], sections["categories"]
    if not images:
        add("no images", "images")
    for index, category in enumerate(categories):
        if not (isinstance(category, dict) and _is_id(category.get("id"))):
            add("malformed category entries", f"categories[{index}]", repr(category))

    usable_images = []
    for index, image in enumerate(images):
        error = _image_entry_error(image)
        if error:
            label = image["id"] if isinstance(image, dict) and _is_id(image.get("id")) else f"images[{index}]"
            add("malformed image entries", label, error)
        else:
            usable_images.append(image)
    usable_annotations = []
    for index, ann in enumerate(annotations):
        error = _annotation_entry_error(ann)
        if error:
            label = ann["id"] if isinstance(ann, dict) and _is_id(ann.get("id")) else f"annotations[{index}]"
            add("malformed annotation entries", label, error)
        else:
            usable_annotations.append(ann)

    image_counts = Counter(im["id"] for im in usable_images)
    for image_id in sorted((i for i, n in image_counts.items() if n > 1), key=str):
        add("duplicate image ids", image_id)
    ann_counts = Counter(a["id"] for a in usable_annotations)
    for ann_id in sorted((i for i, n in ann_counts.items() if n > 1), key=str):
        add("duplicate annotation ids", ann_id)

    # Entries with an unusable field are reported above; an annotation of such an image is not an orphan.
    known_image_ids = {im["id"] for im in images if isinstance(im, dict) and _is_id(im.get("id"))}
    images_by_id = {im["id"]: im for im in usable_images}
    annotated = set()
    for ann in usable_annotations:
        ann_id = ann["id"]
        if ann["image_id"] not in known_image_ids:
            add("annotations of unknown images", ann_id, f"image_id={ann['image_id']!r}")
            continue
        annotated.add(ann["image_id"])
        if ann["category_id"] not in category_ids:
            add("unknown category ids", ann_id, f"category_id={ann['category_id']!r}")
        if ann.get("ignore", 0) != 0:
            add("'ignore' annotations", ann_id, f"ignore={ann['ignore']!r}")
        if evaluated and _fails_cocoeval(ann):
            add("fields COCOeval needs", ann_id, _fails_cocoeval(ann))
        bbox = ann["bbox"]
        box_kind = _box_kind(bbox)
        if box_kind:
            add(box_kind, ann_id, f"bbox={bbox!r}")
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            add("empty boxes", ann_id, f"bbox={bbox!r}")
            continue
        image = images_by_id.get(ann["image_id"])
        if image is None:  # its image entry is malformed (reported above): no size to compare with
            continue
        width, height = image["width"], image["height"]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            add("boxes outside the image", ann_id, f"bbox={bbox!r} in a {width:g}x{height:g} image")
        elif (x < -OUTSIDE_TOLERANCE or y < -OUTSIDE_TOLERANCE
              or x + w > width + OUTSIDE_TOLERANCE or y + h > height + OUTSIDE_TOLERANCE):
            add("boxes partly outside the image", ann_id, f"bbox={bbox!r} in a {width:g}x{height:g} image")

    if image_root is not None:
        for image in usable_images:
            path = os.path.join(image_root, image["file_name"])
            kind, detail = _image_file_problem(path, image["width"], image["height"], decode_images)
            if kind:
                add(kind, image["id"], detail)
    for image in usable_images:
        if image["id"] not in annotated:
            add("images without annotations", image["id"])
