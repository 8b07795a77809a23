"""SSD's training augmentation as detectron2 Augmentations, and a mapper that gives them the boxes.

The SSD recipe (paper §2.2 "Data augmentation", §3.6; Caffe's ssd_pascal.py; mmdetection v1's SSD,
which the scale-balanced authors' code runs) in order:

1. photometric distortion (:class:`SSDPhotometricDistortion`): each with probability 0.5, brightness
   +U(-32, 32), contrast xU(0.5, 1.5), saturation xU(0.5, 1.5), hue +U(-18, 18) degrees, contrast
   before or after the HSV step at random;
2. zoom out (:class:`ZoomOut`, inside detectron2's ``RandomApply(prob=0.5)``): the image placed at a
   random position on a canvas up to 4x its size filled with the mean pixel;
3. min-IoU random crop (:class:`SSDMinIoURandomCrop`): detectron2's ``MinIoURandomCrop`` (mmdetection's
   sampler) that also drops the boxes whose centre falls outside the crop, as SSD's "emit constraint";
4. resize to 300x300 or 512x512 (detectron2's ``Resize``) and horizontal flip (``RandomFlip``).

detectron2 supplies ``MinIoURandomCrop``, ``RandomApply``, ``Resize``, ``RandomFlip`` and the
``BlendTransform`` used for brightness and contrast. What it lacks is written here: the hue/saturation
transform in HSV (detectron2's ``RandomSaturation`` blends with grey and it has no hue), the per-channel
mean fill of the zoom-out canvas (``PadTransform`` pads with one value), the centre rule of the crop,
and a mapper that passes boxes to the augmentations (detectron2's ``DatasetMapper`` passes only the
image, so its ``MinIoURandomCrop`` would never crop).
"""
import copy
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .._compat import require_detectron2

require_detectron2("d2imbalance.data.ssd_augmentation")
import detectron2.data.detection_utils as utils  # noqa: E402
import detectron2.data.transforms as T  # noqa: E402
from detectron2.data import DatasetMapper  # noqa: E402
from detectron2.structures import BoxMode  # noqa: E402

__all__ = [
    "HSVTransform",
    "ChannelPermutationTransform",
    "FillPadTransform",
    "CenterKeepCropTransform",
    "SSDPhotometricDistortion",
    "ZoomOut",
    "SSDMinIoURandomCrop",
    "SSDDatasetMapper",
]


class HSVTransform(T.Transform):
    """Scale the saturation and shift the hue (in degrees) of a uint8 3-channel image.

    Float HSV as mmdetection's PhotoMetricDistortion (hue in [0, 360), saturation in [0, 1]),
    saturation clipped to [0, 1] and the result to [0, 255]. RGB and BGR images give the same
    distribution: swapping R and B mirrors the hue circle and the hue shift is symmetric.
    """

    def __init__(self, saturation: float, hue_delta: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_BGR2HSV)
        hsv[..., 1] = np.clip(hsv[..., 1] * self.saturation, 0.0, 1.0)
        hsv[..., 0] = np.mod(hsv[..., 0] + self.hue_delta, 360.0)
        return np.clip(np.rint(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)), 0, 255).astype(np.uint8)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords


class ChannelPermutationTransform(T.Transform):
    """Reorder the colour channels (mmdetection's and ssd.pytorch's "random channel swap")."""

    def __init__(self, order: Sequence[int]):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img[..., list(self.order)])

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords


class FillPadTransform(T.PadTransform):
    """``PadTransform`` whose ``pad_value`` may be one value per channel (SSD fills with the mean pixel)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        out = np.empty((self.y0 + h + self.y1, self.x0 + w + self.x1) + img.shape[2:], dtype=img.dtype)
        out[...] = np.rint(np.asarray(self.pad_value, dtype=np.float64)).astype(img.dtype)
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


class CenterKeepCropTransform(T.CropTransform):
    """``CropTransform`` that collapses every box whose centre lies outside the crop to an empty box, so
    detectron2's ``filter_empty_instances`` removes it (SSD's emit constraint; detectron2's crop would
    only clip such boxes)."""

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        box = super().apply_box(box)
        centers = (box[:, :2] + box[:, 2:]) / 2
        inside = (centers > 0).all(axis=1) & (centers[:, 0] < self.w) & (centers[:, 1] < self.h)
        box[~inside] = 0
        return box


class SSDPhotometricDistortion(T.Augmentation):
    """SSD's photometric distortion (Caffe's DistortImage, mmdetection's PhotoMetricDistortion).

    Each distortion is applied with probability ``prob``: brightness + U(-brightness_delta, +),
    contrast x U(contrast_range), saturation x U(saturation_range) and hue + U(-hue_delta, +) degrees
    in HSV; contrast comes before or after the HSV step with probability 1/2. Values are clipped to
    [0, 255] after every step, as Caffe's 8-bit images are.

    ``channel_swap_prob``: probability of a random channel permutation at the end; 0 as Caffe's
    recipe (``random_order_prob: 0``), mmdetection v1 and ssd.pytorch use 0.5.
    """

    def __init__(
        self,
        brightness_delta: float = 32.0,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18.0,
        prob: float = 0.5,
        channel_swap_prob: float = 0.0,
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"SSDPhotometricDistortion takes uint8 HxWx3 images, got {image.dtype} {image.shape}; "
                "read images in RGB or BGR format."
            )
        transforms = []
        if np.random.rand() < self.prob:
            delta = np.random.uniform(-self.brightness_delta, self.brightness_delta)
            transforms.append(T.BlendTransform(src_image=delta, src_weight=1.0, dst_weight=1.0))
        contrast_first = np.random.rand() < 0.5
        contrast = None
        if np.random.rand() < self.prob:
            alpha = np.random.uniform(*self.contrast_range)
            contrast = T.BlendTransform(src_image=0.0, src_weight=0.0, dst_weight=alpha)
        saturation = np.random.uniform(*self.saturation_range) if np.random.rand() < self.prob else 1.0
        hue = np.random.uniform(-self.hue_delta, self.hue_delta) if np.random.rand() < self.prob else 0.0
        hsv = HSVTransform(saturation, hue) if (saturation, hue) != (1.0, 0.0) else None
        ordered = [contrast, hsv] if contrast_first else [hsv, contrast]
        transforms += [t for t in ordered if t is not None]
        if np.random.rand() < self.channel_swap_prob:
            transforms.append(ChannelPermutationTransform(np.random.permutation(3)))
        return T.TransformList(transforms)


class ZoomOut(T.Augmentation):
    """SSD's "zoom out" (Caffe's expand_param, mmdetection's Expand): place the image at a uniformly
    random position on a canvas ``r`` times its size, r ~ U(1, max_ratio), filled with ``fill``.
    Wrap it in ``RandomApply(prob=0.5)`` as the recipe does."""

    def __init__(self, max_ratio: float = 4.0, fill: Sequence[float] = (0.0, 0.0, 0.0)):
        """
        Args:
            max_ratio: largest canvas side / image side (the recipe: 4).
            fill: the canvas colour, one value per channel in the image's format (the mean pixel).
        """
        super().__init__()
        if max_ratio < 1:
            raise ValueError(f"ZoomOut(max_ratio={max_ratio}) must be >= 1 (1 = no zoom out).")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        ratio = np.random.uniform(1.0, self.max_ratio)
        canvas_w, canvas_h = int(w * ratio), int(h * ratio)
        left = int(np.random.uniform(0, canvas_w - w))
        top = int(np.random.uniform(0, canvas_h - h))
        return FillPadTransform(
            left, top, canvas_w - w - left, canvas_h - h - top, orig_w=w, orig_h=h, pad_value=tuple(self.fill)
        )


class SSDMinIoURandomCrop(T.MinIoURandomCrop):
    """detectron2's ``MinIoURandomCrop`` (mmdetection's sampler: min IoU drawn from {none, 0.1, 0.3, 0.5,
    0.7, 0.9, any}, crop sides in [0.3, 1] of the image's with aspect in [0.5, 2], every box's IoU with
    the crop >= the minimum, at least one box centre inside) whose crop drops the boxes whose centre is
    outside it (:class:`CenterKeepCropTransform`)."""

    def get_transform(self, image: np.ndarray, boxes: Optional[np.ndarray]) -> T.Transform:
        transform = super().get_transform(image, boxes)
        if isinstance(transform, T.CropTransform):
            return CenterKeepCropTransform(transform.x0, transform.y0, transform.w, transform.h)
        return transform


class SSDDatasetMapper(DatasetMapper):
    """detectron2's ``DatasetMapper`` that also hands the (non-crowd) ground-truth boxes to the
    augmentations, which box-aware augmentations such as ``MinIoURandomCrop`` need. Images and boxes
    only (no masks, keypoints, semantic segmentation or precomputed proposals)."""

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annotations = [a for a in dataset_dict.get("annotations", []) if a.get("iscrowd", 0) == 0]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        aug_input = T.AugInput(image, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])
        return dataset_dict
