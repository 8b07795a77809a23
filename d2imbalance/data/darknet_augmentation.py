"""YOLOv3's (Darknet's) training augmentation as detectron2 Augmentations, and its multi-scale training.

Source: pjreddie/darknet. ``src/data.c`` ``load_data_detection`` at the YOLOv3 release (commit e84933bf,
2018-03-25, "YOLOv3 WOOOO!!!!!!!"), for each image ``orig`` and network size ``w x h``:

1. ``image sized = make_image(w, h, orig.c); fill_image(sized, .5);`` -- a canvas of 0.5 grey;
2. ``float dw = jitter * orig.w; float dh = jitter * orig.h;``
   ``float new_ar = (orig.w + rand_uniform(-dw, dw)) / (orig.h + rand_uniform(-dh, dh));``
   ``float scale = rand_uniform(.25, 2);`` -- commit b13f67bf (2018-08-03) later replaced this by
   ``float scale = 1;`` (the draw commented out), which master keeps: ``scale_range=(1, 1)`` gives that;
3. ``if(new_ar < 1){ nh = scale * h; nw = nh * new_ar; } else { nw = scale * w; nh = nw / new_ar; }``
   ``float dx = rand_uniform(0, w - nw); float dy = rand_uniform(0, h - nh);`` -- ``rand_uniform``
   (``src/utils.c``) swaps its bounds when ``max < min``, so ``dx`` is negative (a crop) when ``nw > w``;
4. ``place_image(orig, nw, nh, dx, dy, sized);`` (``src/image.c``): for each canvas pixel ``(x, y)`` of the
   ``nw x nh`` rectangle, ``rx = ((float)x / w) * im.w`` (``w`` = ``nw`` there; master's version, see below)
   and ``bilinear_interpolate(im, rx, ry, c)``, written
   by ``set_pixel`` at ``(x + dx, y + dy)``, which ignores pixels outside the canvas;
5. ``random_distort_image(sized, hue, saturation, exposure);``
6. ``int flip = rand()%2; if(flip) flip_image(sized);``
7. ``fill_truth_detection(..., flip, -dx/w, -dy/h, nw/w, nh/h)`` -> ``correct_boxes``: ``left * sx - dx``
   etc. (i.e. ``left * nw/w + dx/w`` in the canvas' relative coordinates), mirrored when flipped, each side
   ``constrain(0, 1, ...)``; then ``if ((w < .001 || h < .001))`` the box is skipped.

``yolov3.cfg``: ``hue=.1``, ``saturation = 1.5``, ``exposure = 1.5``, and ``jitter=.3``, ``random=1`` in
every ``[yolo]`` layer (``examples/detector.c`` ``train_detector`` reads ``jitter`` and ``random`` from the
last layer).

Here: :class:`DarknetJitterCrop` (steps 1-4, 7) and :class:`DarknetHSVDistortion` (step 5); step 6 is
detectron2's ``RandomFlip()`` (probability 0.5, horizontal). Boxes: detectron2's ``DatasetMapper`` calls
``utils.transform_instance_annotations``, which clips every transformed box to the image
(``.clip(min=0)`` and ``np.minimum(bbox, [w, h, w, h])``), and then ``utils.filter_empty_instances``,
which drops boxes whose width or height is <= 1e-5 pixels. Darknet's minimum is 0.001 of the canvas
(0.6 pixel at 608): to keep Darknet's rule, :class:`PlaceTransform` collapses the boxes that are narrower
or lower than ``min_box_size`` pixels after clipping to the canvas to empty boxes, which the mapper
then drops (``DarknetJitterCrop(min_box_frac=0.001)``).

Deliberate differences from Darknet:

* pixel geometry: Darknet samples canvas pixel ``x`` at source ``x * im.w / nw`` (pixel corners, integer
  ``nw``, ``nh``, ``dx``, ``dy`` through ``place_image``'s ``int`` parameters, while the boxes use the float
  values). Here the image and the boxes share one exact map ``X' = X * nw / orig_w + dx`` in detectron2's
  continuous coordinates (pixel ``i`` covers ``[i, i + 1]``); a canvas pixel is image when its centre lies
  in the placed rectangle, grey fill otherwise (Darknet blends the right and bottom edge with black, as
  ``get_pixel_extend`` returns 0 outside the image). At the release commit ``place_image`` truncated
  ``rx``, ``ry`` to ``int`` (nearest-pixel sampling); the float, bilinear version came with PR #462
  (commit 558ec9c6, merged 2018-03-28), which is what is done here.
* images stay in detectron2's 0-255 range: the grey fill is 127.5 (128 in uint8 images).

Multi-scale training (``random=1``): ``examples/detector.c`` ``train_detector``:
``if(l.random && count++%10 == 0){ int dim = (rand() % 10 + 10) * 32;``
``if (get_current_batch(net)+200 > net->max_batches) dim = 608; ... resize_network(nets[i], dim, dim); }``
-- a new size in {320, 352, ..., 608} every 10 iterations, 608 near the end. :class:`MultiScaleSchedule`
gives that size as a function of (seed, iteration) only, and :func:`resize_batch` resamples a batch of
square canvases to it inside the model (Darknet instead places the original image directly on a
``dim x dim`` canvas; resampling the canvas is a second bilinear interpolation).
"""
import random
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .._compat import require_detectron2

require_detectron2("d2imbalance.data.darknet_augmentation")
import detectron2.data.transforms as T  # noqa: E402

__all__ = [
    "PlaceTransform",
    "DarknetHSVTransform",
    "DarknetJitterCrop",
    "DarknetHSVDistortion",
    "darknet_rgb_to_hsv",
    "darknet_hsv_to_rgb",
    "DARKNET_MULTISCALE_SIZES",
    "MultiScaleSchedule",
    "resize_batch",
]

# examples/detector.c: dim = (rand() % 10 + 10) * 32
DARKNET_MULTISCALE_SIZES = tuple(range(320, 608 + 1, 32))


# ----------------------------------------------------------------------------- jitter, scale and place
class PlaceTransform(T.Transform):
    """Resize an ``src_h x src_w`` image to ``new_h x new_w`` (bilinear) and paste it with its top-left
    corner at ``(dx, dy)`` on a ``canvas_h x canvas_w`` canvas filled with ``fill`` (Darknet's
    ``place_image`` on a ``fill_image(sized, .5)`` canvas). ``dx``/``dy`` may be negative and the
    resized image larger than the canvas: the part outside the canvas is cut off.

    Coordinates map as ``x * new_w / src_w + dx``, ``y * new_h / src_h + dy``. ``apply_box`` also clips the
    boxes to the canvas and collapses those narrower or lower than ``min_box_size`` pixels to empty boxes
    (Darknet's ``w < .001 || h < .001`` rule with ``min_box_size = 0.001 * canvas side``).
    """

    def __init__(
        self,
        src_h: int,
        src_w: int,
        new_h: float,
        new_w: float,
        dx: float,
        dy: float,
        canvas_h: int,
        canvas_w: int,
        fill=127.5,
        min_box_size: float = 0.0,
    ):
        super().__init__()
        self._set_attributes(locals())

    def _warp(self, img: np.ndarray, interp: int) -> np.ndarray:
        sx, sy = self.new_w / self.src_w, self.new_h / self.src_h
        # continuous X' = sx * X + dx, with pixel i centred at i + 0.5, in cv2's pixel-index convention
        matrix = np.array([[sx, 0.0, 0.5 * sx + self.dx - 0.5], [0.0, sy, 0.5 * sy + self.dy - 0.5]])
        out = cv2.warpAffine(
            img, matrix, (int(self.canvas_w), int(self.canvas_h)), flags=interp, borderMode=cv2.BORDER_REPLICATE
        )
        if out.ndim < img.ndim:  # cv2 drops a trailing channel axis of size 1
            out = out[..., None]
        return out

    def _outside(self) -> np.ndarray:
        """Canvas pixels whose centre is outside the placed rectangle."""
        cols = np.arange(self.canvas_w) + 0.5
        rows = np.arange(self.canvas_h) + 0.5
        in_x = (cols >= self.dx) & (cols < self.dx + self.new_w)
        in_y = (rows >= self.dy) & (rows < self.dy + self.new_h)
        return ~(in_y[:, None] & in_x[None, :])

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.shape[:2] != (self.src_h, self.src_w):
            raise ValueError(
                f"PlaceTransform was drawn for a {self.src_h}x{self.src_w} image, got {img.shape[:2]}; "
                "draw a new transform for this image (DarknetJitterCrop.get_transform)."
            )
        out = self._warp(img, cv2.INTER_LINEAR)
        fill = np.asarray(self.fill, dtype=np.float64)
        if np.issubdtype(out.dtype, np.integer):
            info = np.iinfo(out.dtype)
            fill = np.clip(np.rint(fill), info.min, info.max)
        out[self._outside()] = fill.astype(out.dtype)
        return out

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Nearest-neighbour placement, 0 (background) outside the placed image."""
        dtype = segmentation.dtype
        out = self._warp(segmentation.astype(np.uint8) if dtype == bool else segmentation, cv2.INTER_NEAREST)
        out[self._outside()] = 0
        return out.astype(dtype)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64).copy()
        coords[:, 0] = coords[:, 0] * (self.new_w / self.src_w) + self.dx
        coords[:, 1] = coords[:, 1] * (self.new_h / self.src_h) + self.dy
        return coords

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        box = super().apply_box(box)
        box[:, 0::2] = np.clip(box[:, 0::2], 0, self.canvas_w)
        box[:, 1::2] = np.clip(box[:, 1::2], 0, self.canvas_h)
        small = ((box[:, 2] - box[:, 0]) < self.min_box_size) | ((box[:, 3] - box[:, 1]) < self.min_box_size)
        box[small] = 0
        return box


class DarknetJitterCrop(T.Augmentation):
    """Darknet's (YOLOv3's) random aspect jitter, scale and placement on a ``size x size`` canvas
    (``load_data_detection``, see the module docstring):

    ``new_ar = (w + U(-jitter*w, jitter*w)) / (h + U(-jitter*h, jitter*h))``, ``scale = U(scale_range)``;
    if ``new_ar < 1``: ``nh = scale*size, nw = nh*new_ar``, else ``nw = scale*size, nh = nw/new_ar``;
    ``dx = U(0, size - nw)``, ``dy = U(0, size - nh)``; the image resized to ``nw x nh`` and placed at
    ``(dx, dy)`` on a canvas of ``fill``. The draws come from ``np.random`` in that order, so detectron2's
    per-worker seeding applies.
    """

    def __init__(
        self,
        size: int,
        jitter: float = 0.3,
        scale_range: Tuple[float, float] = (0.25, 2.0),
        fill=127.5,
        min_box_frac: float = 0.001,
    ):
        """
        Args:
            size: the canvas side = the network's input size (yolov3.cfg: 608; multi-scale training
                resamples the canvas later, see :func:`resize_batch`).
            jitter: the ``[yolo]`` layers' ``jitter`` (yolov3.cfg: .3), in [0, 1).
            scale_range: bounds of the scale of the longer placed side relative to ``size``; Darknet at the
                YOLOv3 release: (.25, 2); later master: (1, 1).
            fill: canvas value (Darknet's 0.5 grey = 127.5 in 0-255 pixels), a number or one per channel.
            min_box_frac: boxes narrower or lower than this fraction of ``size`` after clipping are
                emptied, so the mapper drops them (Darknet: .001; 0 keeps detectron2's own rule only).
        """
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"DarknetJitterCrop(size={size!r}): the canvas side must be a positive int, e.g. 608.")
        if not 0 <= jitter < 1:
            raise ValueError(f"DarknetJitterCrop(jitter={jitter}) must be in [0, 1) (yolov3.cfg: 0.3).")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(
                f"DarknetJitterCrop(scale_range={tuple(scale_range)}) needs 0 < low <= high, e.g. (0.25, 2.0)."
            )
        if min_box_frac < 0:
            raise ValueError(f"DarknetJitterCrop(min_box_frac={min_box_frac}) must be >= 0 (Darknet: 0.001).")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> PlaceTransform:
        h, w = image.shape[:2]
        dw, dh = self.jitter * w, self.jitter * h
        new_ar = (w + np.random.uniform(-dw, dw)) / (h + np.random.uniform(-dh, dh))
        scale = np.random.uniform(*self.scale_range)
        if new_ar < 1:
            nh = scale * self.size
            nw = nh * new_ar
        else:
            nw = scale * self.size
            nh = nw / new_ar
        dx = np.random.uniform(0, self.size - nw)
        dy = np.random.uniform(0, self.size - nh)
        return PlaceTransform(
            h, w, float(nh), float(nw), float(dx), float(dy), self.size, self.size,
            fill=self.fill, min_box_size=self.min_box_frac * self.size,
        )  # fmt: skip


# ----------------------------------------------------------------------------- hue, saturation, exposure
def darknet_rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Darknet's ``rgb_to_hsv`` (src/image.c), vectorised: RGB in [0, 1] -> H in [0, 1), S, V = max.
    Grey pixels get H = (g - b) / 1 = 0 (Darknet computes 0/0 there, harmless since their S is 0)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    safe_v = np.where(v == 0, 1.0, v)
    safe_delta = np.where(delta == 0, 1.0, delta)
    s = np.where(v == 0, 0.0, delta / safe_v)
    h = np.where(r == v, (g - b) / safe_delta, np.where(g == v, 2 + (b - r) / safe_delta, 4 + (r - g) / safe_delta))
    h = np.where(h < 0, h + 6, h) / 6.0
    return np.stack([h, s, v], axis=-1)


def darknet_hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Darknet's ``hsv_to_rgb`` (src/image.c), vectorised, without clamping (S may exceed 1 after a
    saturation boost, as in Darknet; the caller clamps the RGB result)."""
    h6 = 6.0 * hsv[..., 0]
    s, v = hsv[..., 1], hsv[..., 2]
    index = np.floor(h6)
    f = h6 - index
    index = index.astype(np.int64) % 6  # h = 1 (float wrap-around of a tiny negative hue) is h = 0
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = np.choose(index, [v, q, p, p, t, v])
    g = np.choose(index, [t, v, v, q, p, p])
    b = np.choose(index, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


class DarknetHSVTransform(T.Transform):
    """Darknet's ``distort_image(im, hue, sat, val)`` (src/image.c): ``rgb_to_hsv``; S x ``saturation``;
    V x ``exposure``; H + ``hue`` wrapped into [0, 1) (``if (h > 1) h -= 1; if (h < 0) h += 1``);
    ``hsv_to_rgb``; ``constrain_image`` (RGB clamped to [0, 1]). S and V are not clamped before the
    conversion back, only the RGB result is, as in Darknet.

    Images: HxWx3 RGB with values in 0-255 (detectron2's ``image_format="RGB"``), uint8 or float; the
    result has the input's dtype (uint8 rounded). A BGR image gets the same distribution of results
    (swapping R and B mirrors the hue circle, and the hue shift is symmetric).
    """

    def __init__(self, hue: float, saturation: float, exposure: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"DarknetHSVTransform takes HxWx3 RGB images, got shape {img.shape}.")
        hsv = darknet_rgb_to_hsv(img.astype(np.float64) / 255.0)
        hsv[..., 1] *= self.saturation
        hsv[..., 2] *= self.exposure
        hsv[..., 0] = np.mod(hsv[..., 0] + self.hue, 1.0)
        rgb = np.clip(darknet_hsv_to_rgb(hsv), 0.0, 1.0) * 255.0
        if img.dtype == np.uint8:
            return np.rint(rgb).astype(np.uint8)
        return rgb.astype(img.dtype)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class DarknetHSVDistortion(T.Augmentation):
    """Darknet's ``random_distort_image(im, hue, saturation, exposure)``: ``dhue = rand_uniform(-hue, hue)``,
    ``dsat = rand_scale(saturation)``, ``dexp = rand_scale(exposure)`` with ``rand_scale(s)`` (src/utils.c)
    ``= rand_uniform(1, s)``, inverted (``1./scale``) with probability 1/2; then
    :class:`DarknetHSVTransform`. Draws from ``np.random`` in the order: U(-hue, hue), U(1, saturation),
    coin, U(1, exposure), coin (coin ``np.random.rand() < 0.5``: invert)."""

    def __init__(self, hue: float = 0.1, saturation: float = 1.5, exposure: float = 1.5):
        """Defaults: yolov3.cfg's ``hue=.1`` (a fraction of the hue circle), ``saturation = 1.5``,
        ``exposure = 1.5``."""
        super().__init__()
        if not 0 <= hue <= 1:
            raise ValueError(
                f"DarknetHSVDistortion(hue={hue}) must be in [0, 1], a fraction of the hue circle (yolov3.cfg: 0.1)."
            )
        for name, value in (("saturation", saturation), ("exposure", exposure)):
            if not value > 0:
                raise ValueError(f"DarknetHSVDistortion({name}={value}) must be > 0 (1 = no change; yolov3.cfg: 1.5).")
        self._init(locals())

    @staticmethod
    def _rand_scale(s: float) -> float:
        scale = np.random.uniform(1.0, s)
        return 1.0 / scale if np.random.rand() < 0.5 else scale

    def get_transform(self, image: np.ndarray) -> DarknetHSVTransform:
        dhue = np.random.uniform(-self.hue, self.hue)
        dsat = self._rand_scale(self.saturation)
        dexp = self._rand_scale(self.exposure)
        return DarknetHSVTransform(float(dhue), float(dsat), float(dexp))


# ----------------------------------------------------------------------------- multi-scale training
class MultiScaleSchedule:
    """The input size for each training iteration: one of ``sizes`` per block of ``period`` iterations,
    and ``final_size`` in the last ``final_iters`` iterations before ``max_iter``.

    Darknet (``train_detector``): a new ``(rand() % 10 + 10) * 32`` every 10 iterations, and 608 once
    ``get_current_batch(net)+200 > net->max_batches`` (checked at those resize points only, so for
    yolov3.cfg's 500200 batches from iteration 500010: :meth:`darknet` approximates it by the last 200).

    Block ``b``'s size is ``random.Random(f"...:{seed}:{b}").choice(sizes)``: a function of (seed,
    iteration) only (Python seeds ``Random`` from a string through SHA-512, not ``hash()``), so every
    process and every resumed run draws the same sizes.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        period: int = 10,
        seed: int = 0,
        final_size: Optional[int] = None,
        final_iters: int = 0,
        max_iter: Optional[int] = None,
    ):
        sizes = tuple(sizes)
        if not sizes:
            raise ValueError("MultiScaleSchedule(sizes=()) is empty; give the input sizes, e.g. range(320, 609, 32).")
        for size in sizes:
            if not _positive_int(size):
                raise ValueError(f"MultiScaleSchedule(sizes={sizes}) has {size!r}; every size must be a positive int.")
        if not _positive_int(period):
            raise ValueError(f"MultiScaleSchedule(period={period!r}) must be an int >= 1 (Darknet: 10).")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"MultiScaleSchedule(seed={seed!r}) must be an int.")
        if isinstance(final_iters, bool) or not isinstance(final_iters, (int, np.integer)) or final_iters < 0:
            raise ValueError(f"MultiScaleSchedule(final_iters={final_iters!r}) must be an int >= 0 (Darknet: 200).")
        if final_size is not None and not _positive_int(final_size):
            raise ValueError(f"MultiScaleSchedule(final_size={final_size!r}) must be a positive int or None.")
        if max_iter is not None and not _positive_int(max_iter):
            raise ValueError(f"MultiScaleSchedule(max_iter={max_iter!r}) must be a positive int or None.")
        if final_iters > 0 and (final_size is None or max_iter is None):
            raise ValueError(
                f"MultiScaleSchedule(final_iters={final_iters}) needs final_size and max_iter "
                f"(got final_size={final_size}, max_iter={max_iter}); set both, or final_iters=0."
            )
        self.sizes = sizes
        self.period = int(period)
        self.seed = int(seed)
        self.final_size = None if final_size is None else int(final_size)
        self.final_iters = int(final_iters)
        self.max_iter = None if max_iter is None else int(max_iter)

    @classmethod
    def darknet(cls, max_iter: int, seed: int = 0) -> "MultiScaleSchedule":
        """Darknet's YOLOv3 schedule: 320..608 in steps of 32, a new size every 10 iterations, 608 for the
        last 200 iterations."""
        return cls(DARKNET_MULTISCALE_SIZES, period=10, seed=seed, final_size=608, final_iters=200, max_iter=max_iter)

    def size_at(self, iteration: int) -> int:
        if iteration < 0:
            raise ValueError(f"MultiScaleSchedule.size_at(iteration={iteration}): iterations count from 0.")
        if self.final_iters > 0 and iteration >= self.max_iter - self.final_iters:
            return self.final_size
        block = int(iteration) // self.period
        return random.Random(f"d2imbalance.multiscale:{self.seed}:{block}").choice(self.sizes)

    def __repr__(self) -> str:
        return (
            f"MultiScaleSchedule(sizes={self.sizes}, period={self.period}, seed={self.seed}, "
            f"final_size={self.final_size}, final_iters={self.final_iters}, max_iter={self.max_iter})"
        )


def _positive_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


def resize_batch(
    images: torch.Tensor, boxes: Sequence[torch.Tensor], size: int
) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Resample a batch of square canvases ``(N, C, H, H)`` to ``(N, C, size, size)`` (bilinear,
    ``align_corners=False``, no antialiasing) and scale each image's XYXY boxes ``(Mi, 4)`` by ``size / H``.

    Bilinear resampling is linear, so it commutes with per-channel normalisation (pixel mean/std): the
    images may be normalised before or after. ``size == H`` returns the inputs unchanged.
    """
    if images.dim() != 4:
        raise ValueError(f"resize_batch takes images of shape (N, C, H, W), got {tuple(images.shape)}.")
    n, _, h, w = images.shape
    if h != w:
        raise ValueError(
            f"resize_batch takes square canvases (Darknet's network input is size x size), got {h}x{w}; "
            "pad or place the images on a square canvas first (DarknetJitterCrop)."
        )
    if len(boxes) != n:
        raise ValueError(
            f"resize_batch got {n} images but {len(boxes)} box tensors; give one (Mi, 4) tensor per image."
        )
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"resize_batch(size={size!r}): the size must be a positive int.")
    if size == h:
        return images, list(boxes)
    out = F.interpolate(images, size=(int(size), int(size)), mode="bilinear", align_corners=False)
    scale = size / h
    return out, [b * scale for b in boxes]
