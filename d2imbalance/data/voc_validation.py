"""Checks of a Pascal VOC detection dataset (one XML file per image) before training on it.

The VOC counterpart of :func:`~d2imbalance.data.validation.validate_coco_json`, for datasets registered
with detectron2's ``register_pascal_voc`` (metadata ``dirname``, ``split``, ``thing_classes``): whatever
would crash detectron2's ``load_voc_instances`` (or its VOC evaluator, after training), or quietly change
what it trains on, is reported with the XML file, the object, what is wrong and the fix, in the same
:class:`ValidationReport`; fatal ones stop the run.

Files are read as detectron2 reads them: ``<dirname>/ImageSets/Main/<split>.txt`` with ``numpy.loadtxt``,
``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. Boxes are VOC's 1-based inclusive pixel indices,
which detectron2 turns into (xmin - 1, ymin - 1, xmax, ymax): xmin == xmax is a box one pixel wide, and
(1, 1, width, height) is the whole image. Image files are checked through their headers (decoded with
``decode_images=True``) by the COCO validator's code. No detectron2 needed.
"""
import difflib
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .validation import (
    EMPTY_IMAGE_POLICIES,
    OUTSIDE_TOLERANCE,
    Problem,
    ValidationReport,
    _empty_image_problem,
    _image_file_problem,
)

__all__ = ["validate_voc"]

COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def _problem_kinds(split_file, class_names, empty_images: str) -> Dict[str, Tuple[str, str, str]]:
    """kind -> (severity, what, fix), in the order the report lists them."""
    empty = _empty_image_problem(
        empty_images, "images have no <object>", f"annotate them or remove their ids from {split_file}."
    )
    box = "<bndbox> of numeric <xmin>, <ymin>, <xmax>, <ymax> (1-based pixel indices, inclusive)"
    remove = f"or remove those ids from {split_file}."
    return {
        "missing split file": (
            "error", "split file does not exist",
            "check the dataset's dirname and split: detectron2 reads <dirname>/ImageSets/Main/<split>.txt.",
        ),
        "unusable split file": (
            "error", "split file cannot be read as detectron2 reads it (numpy.loadtxt)",
            "write one image id per line, at least two of them (detectron2's loader cannot iterate one).",
        ),
        "no images": (
            "error", "split file lists no image ids (detectron2 refuses an empty dataset)",
            "check that split names this dataset's list of ids.",
        ),
        "duplicate ids": (
            "error", "image ids are listed more than once (trained on more often, and the VOC evaluator "
            "counts their objects more than once)", f"list each id once in {split_file}.",
        ),
        "missing XML files": ("error", "listed ids have no annotation file <id>.xml", "restore the files " + remove),
        "unreadable XML files": (
            "error", "annotation files cannot be parsed as XML",
            "fix the XML where the parser's message points (line, column), or restore the file.",
        ),
        "bad <size> entries": (
            "error", "annotation files lack a <size> of positive integer <width> and <height>",
            "write the image's size in pixels: <size><width>W</width><height>H</height></size>.",
        ),
        "unknown class names": (
            "error", f"objects have a <name> not among the dataset's classes {list(class_names)}",
            "correct the <name> (the closest class is suggested), or add the class to the dataset's "
            "classes (register_pascal_voc's class_names).",
        ),
        "malformed boxes": ("error", f"objects lack a {box}", f"give each <object> a {box}."),
        "non-finite boxes": (
            "error", "objects have a NaN or infinite box coordinate (detectron2 would drop them without a word)",
            "fix or delete those objects.",
        ),
        "empty boxes": (
            "error", "objects have xmax < xmin or ymax < ymin: no area in detectron2's coordinates "
            "(xmin - 1, ymin - 1, xmax, ymax)", "correct the coordinates or delete those objects.",
        ),
        "boxes outside the image": (
            "error", "boxes lie entirely outside their image",
            "check the coordinates (1-based pixel indices) and the <size>.",
        ),
        "boxes partly outside the image": (
            "warning", f"boxes extend more than {OUTSIDE_TOLERANCE:g}px beyond their image; detectron2 clips them",
            "clip them to 1..width and 1..height if that is not intended.",
        ),
        "bad difficult flags": (
            "error", "objects have a <difficult> that is not an integer (d2imbalance's VOC loader reads it "
            "with int())", "write <difficult>0</difficult> or <difficult>1</difficult>.",
        ),
        "fields the VOC evaluator needs": (
            "error", "objects of this evaluated dataset lack <pose> or <difficult>, or have a <truncated> or "
            "box coordinate that is not an integer, which detectron2's PascalVOCDetectionEvaluator reads "
            "with int() (it would fail after training)",
            "give each <object> a <pose>, <truncated>0</truncated>, <difficult>0</difficult> (1 where it "
            "applies) and integer box coordinates.",
        ),
        "missing image files": (
            "error", "images have no file <id>.jpg under JPEGImages", "restore the files " + remove,
        ),
        "empty image files": ("error", "image files are empty (0 bytes)", "restore the files " + remove),
        "unreadable image files": (
            "error", "image files are not images PIL can open (detectron2 reads images with PIL)",
            "re-export them as JPEG, " + remove,
        ),
        "image sizes disagree with the XML": (
            "error", "images' <size> in the XML differs from their files "
            "(after EXIF rotation; detectron2 stops with SizeMismatchError)",
            "set <width> and <height> in the XML's <size> to the file's size.",
        ),
        "undecodable image files": (
            "error", "image files have headers but their pixel data cannot be decoded (truncated or corrupt)",
            "re-export or restore them, " + remove,
        ),
        "images without objects": empty,
    }


def _read_split(split_file: str) -> Tuple[List[str], str]:
    """(the ids, "") as detectron2's loader reads them with numpy.loadtxt, or ([], why it cannot)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loadtxt warns of an empty file: reported as "no images"
            ids = np.loadtxt(split_file, dtype=str)
    except (OSError, ValueError) as e:
        return [], str(e)
    if ids.ndim == 0:
        return [], f"a single id ({ids.item()!r}): loadtxt returns a 0-d array, which detectron2 cannot iterate"
    if ids.ndim > 1:
        return [], f"{ids.shape[1]} columns per line, not 1"
    return [str(i) for i in ids], ""


def _is_int_text(text) -> bool:
    """Whether int() reads it, as detectron2 reads sizes and its evaluator reads flags and boxes."""
    try:
        int(text)
    except (TypeError, ValueError):
        return False
    return True


def _size(root) -> Tuple[Optional[Tuple[int, int]], str]:
    """((width, height), "") as detectron2 reads <size>, or (None, what is wrong)."""
    size = root.find("size")
    if size is None:
        return None, "no <size>"
    values = []
    for key in ("width", "height"):
        text = size.findtext(key)
        if not (_is_int_text(text) and int(text) > 0):
            return None, f"{key}={text!r}"
        values.append(int(text))
    return (values[0], values[1]), ""


def _box(obj) -> Tuple[Optional[Tuple[float, ...]], str]:
    """(xmin, ymin, xmax, ymax) as detectron2 reads them with float(), or (None, what is wrong)."""
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return None, "no <bndbox>"
    values = []
    for key in COORDINATES:
        text = bndbox.findtext(key)
        try:
            values.append(float(text))
        except (TypeError, ValueError):
            return None, f"{key}={text!r}" if text is not None else f"no <{key}>"
    return tuple(values), ""


def _fails_voc_eval(obj) -> str:
    """Why detectron2's VOC evaluator (parse_rec) cannot read this object ("" when it can). Asked only
    of objects with four finite coordinates; a non-integer <difficult> is reported for every dataset."""
    for key in ("pose", "difficult"):
        if obj.find(key) is None:
            return f"no <{key}>"
    for key, parent in [("truncated", obj)] + [(key, obj.find("bndbox")) for key in COORDINATES]:
        text = parent.findtext(key)
        if not _is_int_text(text):
            return f"{key}={text!r}"
    return ""


def validate_voc(
    dirname: str,
    split: str,
    class_names: Sequence[str],
    *,
    dataset: Optional[str] = None,
    empty_images: str = "keep",
    decode_images: bool = False,
    evaluated: bool = False,
) -> ValidationReport:
    """Check a Pascal VOC dataset as detectron2's ``register_pascal_voc`` defines it.

    Args:
        dirname, split, class_names: as given to ``register_pascal_voc`` (the dataset's metadata
            ``dirname``, ``split`` and ``thing_classes``).
        dataset, empty_images, decode_images: as for ``validate_coco_json``; images without objects
            are what ``empty_images`` decides about.
        evaluated: the dataset is scored by ``PascalVOCDetectionEvaluator`` (a test set), which also
            reads each object's <pose>, <truncated> and <difficult>, and its box as integers.

    Checks (fatal unless said): the split file exists, is one id per line (more than one), lists some
    ids and none twice; each id's XML exists and parses, with a positive integer <size>; each object's
    <name> is one of ``class_names``; its box is four finite numbers, not empty, not wholly outside
    the image (a warning when it sticks out by more than 1 px); <difficult>, where present, is an
    integer; the image file exists, is not empty, opens, has the XML's size, and (``decode_images``)
    decodes; images without objects. The report names the split file; each problem names the XML file
    (duplicates: the id) with, in its detail, the object's 1-based position and name, or the image file.
    """
    if empty_images not in EMPTY_IMAGE_POLICIES:
        raise ValueError(f"empty_images={empty_images!r} must be one of {EMPTY_IMAGE_POLICIES}.")
    split_file = os.path.join(dirname, "ImageSets", "Main", split + ".txt")
    report = ValidationReport(dataset, split_file)
    kinds = _problem_kinds(split_file, class_names, empty_images)
    found: Dict[str, Problem] = {}

    def add(kind: str, item_id, detail: str = "") -> None:
        if kind not in found:
            severity, what, fix = kinds[kind]
            found[kind] = Problem(kind, severity, what=what, fix=fix)
        found[kind].add(item_id, detail)

    ids = []
    if not os.path.isfile(split_file):
        add("missing split file", split_file)
    else:
        ids, unusable = _read_split(split_file)
        if unusable:
            add("unusable split file", split_file, unusable)
        elif not ids:
            add("no images", split_file)
    for image_id, count in Counter(ids).items():
        if count > 1:
            add("duplicate ids", image_id, f"listed {count} times")
        # detectron2 loads a listed id as often as it is listed.
        report.num_annotations += count * _check_image(dirname, image_id, class_names, add, decode_images, evaluated)
    report.num_images = len(ids)
    report.problems = [found[kind] for kind in kinds if kind in found]
    return report


def _check_image(dirname, image_id, class_names, add, decode_images, evaluated) -> int:
    """The checks of one id's XML and image file; returns its number of objects."""
    xml_file = os.path.join(dirname, "Annotations", image_id + ".xml")
    if not os.path.isfile(xml_file):
        add("missing XML files", xml_file)
        return 0
    try:
        root = ET.parse(xml_file).getroot()
    except (ET.ParseError, OSError) as e:
        add("unreadable XML files", xml_file, str(e))
        return 0
    size, bad_size = _size(root)
    if bad_size:
        add("bad <size> entries", xml_file, bad_size)
    objects = root.findall("object")
    for index, obj in enumerate(objects):
        name = obj.findtext("name")
        label = f"object {index + 1}" + (f" {name!r}" if name else "")
        if name not in class_names:
            closest = difflib.get_close_matches(name or "", class_names, n=1)
            why = f"closest class {closest[0]!r}" if closest else "no class is close"
            add("unknown class names", xml_file, f"{label}: " + (why if name else "no <name>"))
        difficult = obj.findtext("difficult")
        if difficult is not None and not _is_int_text(difficult):
            add("bad difficult flags", xml_file, f"{label}: difficult={difficult!r}")
        box, malformed = _box(obj)
        if malformed:
            add("malformed boxes", xml_file, f"{label}: {malformed}")
            continue
        shown = "(xmin, ymin, xmax, ymax)=(" + ", ".join(f"{v:g}" for v in box) + ")"
        if not all(math.isfinite(v) for v in box):
            add("non-finite boxes", xml_file, f"{label}: {shown}")
            continue
        if evaluated and _fails_voc_eval(obj):
            add("fields the VOC evaluator needs", xml_file, f"{label}: {_fails_voc_eval(obj)}")
        x0, y0, x1, y1 = box[0] - 1, box[1] - 1, box[2], box[3]  # detectron2's coordinates
        if x1 <= x0 or y1 <= y0:
            add("empty boxes", xml_file, f"{label}: {shown}")
        elif size is not None:
            width, height = size
            where = f"{label}: {shown} in a {width}x{height} image"
            if x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0:
                add("boxes outside the image", xml_file, where)
            elif (x0 < -OUTSIDE_TOLERANCE or y0 < -OUTSIDE_TOLERANCE
                  or x1 > width + OUTSIDE_TOLERANCE or y1 > height + OUTSIDE_TOLERANCE):
                add("boxes partly outside the image", xml_file, where)
    if size is not None:
        image_file = os.path.join(dirname, "JPEGImages", image_id + ".jpg")
        kind, detail = _image_file_problem(image_file, size[0], size[1], decode_images, source="XML")
        if kind:
            add(kind, xml_file, detail)
    if not objects:
        add("images without objects", xml_file)
    return len(objects)
