"""Pascal VOC training dicts with the "difficult" flag that detectron2's loader drops.

detectron2 registers ``voc_2007_trainval``, ``voc_2012_trainval``, ``voc_2007_test`` ... reading
``$DETECTRON2_DATASETS/VOC2007`` and ``VOC2012`` (detectron2/data/datasets/builtin.py). Its loader
keeps "difficult" objects as ordinary ground truth (pascal_voc.py: "We include 'difficult' samples in
training"). VOC's protocol, the SSD PyTorch ports and mmdetection (the scale-balanced authors' code)
leave them out of the training targets; Caffe's SSD recipe trains on them (``train_on_diff_gt = True``).
:func:`voc_detection_dataset_dicts` marks them ``iscrowd=1`` (plus ``difficult=1``), which
detectron2's ``DatasetMapper`` drops from the targets. Evaluation needs nothing from here:
``PascalVOCDetectionEvaluator`` reads the XML itself and ignores difficult objects.
"""
import os
import xml.etree.ElementTree as ET
from typing import List, Sequence, Union

from .._compat import require_detectron2

require_detectron2("d2imbalance.data.voc")
from detectron2.data.build import (  # noqa: E402
    filter_images_with_only_crowd_annotations,
    get_detection_dataset_dicts,
)
from detectron2.utils.file_io import PathManager  # noqa: E402

__all__ = ["voc_detection_dataset_dicts"]

_DIFFICULT_CHOICES = ("exclude", "include")


def _difficult_flags(xml_path: str) -> List[int]:
    """The difficult flag of each <object>, in file order (the order of detectron2's annotations)."""
    with PathManager.open(xml_path) as f:
        tree = ET.parse(f)
    return [int(obj.findtext("difficult", default="0")) for obj in tree.findall("object")]


def voc_detection_dataset_dicts(
    names: Union[str, Sequence[str]], *, difficult: str = "exclude", filter_empty: bool = True
) -> List[dict]:
    """``get_detection_dataset_dicts`` for detectron2's VOC datasets, deciding what "difficult" objects are.

    Args:
        names: registered VOC dataset names, e.g. ("voc_2007_trainval", "voc_2012_trainval").
        difficult: "exclude" (VOC, ssd.pytorch, mmdetection): marked ``iscrowd=1``, so the mapper
            drops them from the targets; "include" (Caffe SSD, detectron2): kept as ground truth.
        filter_empty: drop images without a non-crowd object (with "exclude", those whose objects
            are all difficult). SSD mines no negatives in such images, so they train nothing.
    """
    if difficult not in _DIFFICULT_CHOICES:
        raise ValueError(f"difficult={difficult!r}; use one of {_DIFFICULT_CHOICES}.")
    dicts = get_detection_dataset_dicts(names, filter_empty=False)
    if difficult == "exclude":
        for record in dicts:
            # detectron2's loader: file_name = <dirname>/JPEGImages/<image_id>.jpg
            dirname = os.path.dirname(os.path.dirname(record["file_name"]))
            flags = _difficult_flags(os.path.join(dirname, "Annotations", f"{record['image_id']}.xml"))
            for annotation, flag in zip(record["annotations"], flags):
                annotation["difficult"] = flag
                annotation["iscrowd"] = flag
    if filter_empty:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    return dicts
