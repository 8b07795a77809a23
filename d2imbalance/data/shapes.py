"""The embedded "shapes" dataset: synthetic COCO-format detection data generated from a seed.

It lets every config train and evaluate anywhere without downloads. Images have textured, cluttered
backgrounds and several filled shapes each; some have none (negatives). Object sizes span COCO's
small / medium / large classes (area < 32², < 96², ≥ 96²) with small objects common; ``size_mix``
sets the proportions.

Generation is deterministic: each image draws from its own ``numpy`` generator seeded by
``(seed, split, index)``, so the same spec always yields the same JSON (and, with the same OpenCV,
the same JPEG bytes). Nothing here imports detectron2.
"""
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

CATEGORIES = ("circle", "square", "triangle", "star")
# COCO's size classes, as areas in pixels (thesis ch. 2): small < 32², medium < 96², large otherwise.
SMALL_AREA, LARGE_AREA = 32**2, 96**2
# sqrt(object area) drawn for each size class, inside COCO's bounds for that class. Rasterising adds
# boundary pixels (about one pixel of sqrt(area)), so a few "small" draws near 31 cover just over 32².
_SQRT_AREA_RANGES = {"small": (9, 31), "medium": (34, 94), "large": (99, 150)}
# Area of each shape as drawn by _shape_polygon, as a fraction of side² (side = circumscribed diameter).
_AREA_FACTORS = {"circle": np.pi / 4, "square": 0.5625, "triangle": 0.325, "star": 0.33}
_SPLIT_IDS = {"train": 0, "val": 1}
DATA_VERSION = 2  # bump when the drawing code changes, so old caches are not reused


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines the generated dataset.

    Args:
        seed: base seed; each image's generator is seeded by (seed, split, index).
        num_train / num_val: images per split.
        image_sizes: (height, width) choices; each image picks one.
        size_mix: probabilities of drawing a small / medium / large object.
        max_objects: objects per non-empty image are drawn uniformly from 1..max_objects.
        empty_fraction: fraction of images with no object at all (kept as negatives).
        max_overlap: largest fraction of either box that may overlap another object's box, so no
            object is hidden by one drawn later.
    """

    seed: int = 0
    num_train: int = 400
    num_val: int = 100
    image_sizes: Tuple[Tuple[int, int], ...] = ((256, 256), (224, 288), (288, 224))
    size_mix: Tuple[float, float, float] = (0.5, 0.3, 0.2)
    max_objects: int = 6
    empty_fraction: float = 0.1
    max_overlap: float = 0.3

    def __post_init__(self):
        if len(self.size_mix) != 3 or min(self.size_mix) < 0 or sum(self.size_mix) <= 0:
            raise ValueError(
                f"size_mix={self.size_mix} must be three non-negative weights for small / medium / "
                "large objects, e.g. (0.5, 0.3, 0.2)."
            )
        if not 0 <= self.empty_fraction < 1:
            raise ValueError(f"empty_fraction={self.empty_fraction} must be in [0, 1).")
        if self.max_objects < 1 or self.num_train < 1 or self.num_val < 1:
            raise ValueError(
                f"max_objects={self.max_objects}, num_train={self.num_train} and num_val={self.num_val} "
                "must all be at least 1."
            )

    def fingerprint(self) -> str:
        """A short hash naming this spec's cache directory."""
        text = json.dumps({"version": DATA_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def num_images(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val}[split]


def default_cache_root() -> Path:
    """``$D2IMBALANCE_CACHE`` if set, else ``~/.cache/d2imbalance``."""
    return Path(os.environ.get("D2IMBALANCE_CACHE", Path.home() / ".cache" / "d2imbalance")).expanduser()


@dataclass
class ShapesPaths:
    root: Path
    json_files: Dict[str, Path]
    image_roots: Dict[str, Path]


def dataset_paths(spec: ShapesSpec, cache_root: Optional[os.PathLike] = None) -> ShapesPaths:
    root = Path(cache_root or default_cache_root()) / f"shapes_{spec.fingerprint()}"
    return ShapesPaths(
        root=root,
        json_files={s: root / f"{s}.json" for s in _SPLIT_IDS},
        image_roots={s: root / s for s in _SPLIT_IDS},
    )


def ensure_shapes_dataset(spec: ShapesSpec = ShapesSpec(), cache_root: Optional[os.PathLike] = None) -> ShapesPaths:
    """Generate the dataset into the cache unless it is already there; return its paths.

    Safe when several processes call it at once (DDP workers): each writes into a private temporary
    directory and renames it into place; a loser of the race discards its identical copy.
    """
    paths = dataset_paths(spec, cache_root)
    if all(p.is_file() for p in paths.json_files.values()):
        return paths
    paths.root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=paths.root.name + ".tmp", dir=paths.root.parent))
    try:
        for split in _SPLIT_IDS:
            write_split(spec, split, tmp)
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
        try:
            os.rename(tmp, paths.root)
        except OSError:
            if not all(p.is_file() for p in paths.json_files.values()):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def write_split(spec: ShapesSpec, split: str, out_dir: Path) -> Path:
    """Draw one split's images into ``out_dir/split/`` and write ``out_dir/split.json``."""
    import cv2

    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    coco = build_split(spec, split, image_writer=lambda name, img: cv2.imwrite(str(image_dir / name), img))
    json_path = out_dir / f"{split}.json"
    json_path.write_text(json.dumps(coco))
    return json_path


def build_split(spec: ShapesSpec, split: str, image_writer=None) -> dict:
    """The COCO dict of one split; ``image_writer(file_name, bgr_uint8)`` receives each image."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"split={split!r} is not one of {sorted(_SPLIT_IDS)}.")
    images, annotations = [], []
    for index in range(spec.num_images(split)):
        rng = np.random.default_rng([spec.seed, _SPLIT_IDS[split], index])
        image, objects = draw_image(spec, rng)
        image_id = index + 1
        file_name = f"{split}_{index:05d}.jpg"
        images.append({"id": image_id, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
        for category_id, bbox, area in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "bbox": bbox,
                    "area": area,
                    "iscrowd": 0,
                }
            )
        if image_writer is not None:
            image_writer(file_name, image)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
    return {
        "info": {"description": f"d2imbalance synthetic shapes ({split})", "version": str(DATA_VERSION)},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def draw_image(spec: ShapesSpec, rng: np.random.Generator):
    """One BGR image and its objects as ``(category_id, [x, y, w, h], area)``."""
    import cv2

    height, width = spec.image_sizes[rng.integers(len(spec.image_sizes))]
    image = _textured_background(height, width, rng)
    objects: List[Tuple[int, List[float], float]] = []
    placed: List[np.ndarray] = []
    num_objects = 0 if rng.random() < spec.empty_fraction else int(rng.integers(1, spec.max_objects + 1))
    size_probs = np.asarray(spec.size_mix, dtype=np.float64) / sum(spec.size_mix)
    for _ in range(num_objects):
        for _attempt in range(10):  # a few tries to find a spot that keeps overlap low
            size_class = ("small", "medium", "large")[rng.choice(3, p=size_probs)]
            category = int(rng.integers(len(CATEGORIES)))
            sqrt_area = rng.uniform(*_SQRT_AREA_RANGES[size_class])
            side = float(min(sqrt_area / np.sqrt(_AREA_FACTORS[CATEGORIES[category]]), 0.9 * min(height, width)))
            cx = rng.uniform(side / 2, width - side / 2)
            cy = rng.uniform(side / 2, height - side / 2)
            polygon = _shape_polygon(CATEGORIES[category], cx, cy, side, rng)
            box = _polygon_box(polygon, height, width)
            if all(_overlap_of_smaller(box, other) <= spec.max_overlap for other in placed):
                break
        else:
            continue
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
        ys, xs = np.nonzero(mask)  # never empty: a shape is >= 10 px across (or 0.9 of a tiny image)
        color = rng.integers(40, 256, size=3)
        image[mask.astype(bool)] = color
        # Tight box of the drawn pixels: always inside the image and never empty.
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        placed.append(np.array([x0, y0, x1, y1], np.float64))
        objects.append((category + 1, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], float(len(xs))))
    return image, objects


def _textured_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour noise plus clutter (lines and dots) that is not any of the categories."""
    import cv2

    coarse = rng.integers(0, 160, size=(max(2, height // 32), max(2, width // 32), 3)).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-20, 21, size=image.shape)
    image = np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):
        p0 = tuple(int(v) for v in rng.integers(0, [width, height]))
        p1 = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.line(image, p0, p1, tuple(int(c) for c in rng.integers(0, 200, 3)), int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(10, 40))):
        center = tuple(int(v) for v in rng.integers(0, [width, height]))
        cv2.circle(image, center, int(rng.integers(1, 3)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return image


def _shape_polygon(name: str, cx: float, cy: float, side: float, rng: np.random.Generator) -> np.ndarray:
    """Vertices (V, 2) of a shape of about ``side`` pixels, randomly rotated (circles: 48-gons)."""
    radius = side / 2
    angle = rng.uniform(0, 2 * np.pi)
    if name == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.full_like(t, radius)
    elif name == "square":
        t = angle + np.arange(4) * np.pi / 2
        radii = np.full(4, radius * np.sqrt(2) * 0.75)
    elif name == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif name == "star":
        t = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    else:
        raise ValueError(f"unknown shape {name!r}; expected one of {CATEGORIES}")
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)


def _polygon_box(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    x0, y0 = np.clip(polygon.min(0), 0, [width, height])
    x1, y1 = np.clip(polygon.max(0), 0, [width, height])
    return np.array([x0, y0, x1, y1], np.float64)


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two xyxy boxes divided by the smaller one's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller if smaller > 0 else 0.0


def size_class(area: float) -> str:
    """COCO's size class of an object area."""
    return "small" if area < SMALL_AREA else "medium" if area < LARGE_AREA else "large"
