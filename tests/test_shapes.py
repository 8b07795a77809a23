"""The embedded shapes dataset: what the generator promises, checked on small seeded splits.

Determinism from a seed (per image), exact image / annotation counts and ids, boxes that are the tight
boxes of the drawn pixels, the size-class mix and empty-image fraction the spec asks for, category ids,
the file layout of the cache, and generation that is atomic (a crash or a lost race leaves no partial
dataset). Pure numpy / OpenCV / PIL, no detectron2: a few seconds.
"""
import dataclasses
import hashlib
import json
import math
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from d2imbalance.data import shapes
from d2imbalance.data.shapes import (
    CATEGORIES,
    LARGE_AREA,
    SMALL_AREA,
    ShapesSpec,
    build_split,
    dataset_paths,
    default_cache_root,
    ensure_shapes_dataset,
    size_class,
)

TINY = ShapesSpec(seed=5, num_train=3, num_val=2)


def _generate(spec, split="train"):
    """The COCO dict of a split and the BGR arrays handed to the image writer, by file name."""
    arrays = {}
    coco = build_split(spec, split, image_writer=lambda name, image: arrays.__setitem__(name, image.copy()))
    return coco, arrays


@pytest.fixture(scope="module")
def default_split():
    """Default drawing settings (up to 6 objects, 10% empty, mix 0.5/0.3/0.2), 40 images."""
    return _generate(ShapesSpec(seed=3, num_train=40, num_val=10))


@pytest.fixture(scope="module")
def single_object_split():
    """Exactly one object per image: its pixels are not overdrawn by another object."""
    return _generate(ShapesSpec(seed=1, num_train=25, num_val=1, max_objects=1, empty_fraction=0.0))


def _by_image(coco):
    annotations = {}
    for a in coco["annotations"]:
        annotations.setdefault(a["image_id"], []).append(a)
    return annotations


# ---------------------------------------------------------------- determinism


def test_same_spec_gives_identical_json_and_pixels(default_split):
    coco, arrays = default_split
    again, again_arrays = _generate(ShapesSpec(seed=3, num_train=40, num_val=10))
    assert json.dumps(again) == json.dumps(coco)
    assert all(np.array_equal(arrays[name], again_arrays[name]) for name in arrays)


def test_each_image_depends_only_on_seed_split_and_index(default_split):
    """Image i is drawn from its own generator: a shorter split is a prefix of a longer one, and the
    seed and the split (not only the index) change what is drawn."""
    coco, arrays = default_split
    prefix, prefix_arrays = _generate(ShapesSpec(seed=3, num_train=5, num_val=10))
    assert prefix["images"] == coco["images"][:5]
    assert prefix["annotations"] == [a for a in coco["annotations"] if a["image_id"] <= 5]
    assert all(np.array_equal(prefix_arrays[name], arrays[name]) for name in prefix_arrays)
    other_seed, _ = _generate(ShapesSpec(seed=4, num_train=5, num_val=10))
    val, val_arrays = _generate(ShapesSpec(seed=3, num_train=40, num_val=5), "val")
    for other in (other_seed, val):
        boxes = [a["bbox"] for a in other["annotations"]]
        assert boxes != [a["bbox"] for a in prefix["annotations"]]
    assert not np.array_equal(val_arrays["val_00000.jpg"], arrays["train_00000.jpg"])


# ---------------------------------------------------------------- counts, ids, categories


def test_image_entries_ids_and_file_names(default_split):
    coco, arrays = default_split
    assert [im["id"] for im in coco["images"]] == list(range(1, 41))
    assert [im["file_name"] for im in coco["images"]] == [f"train_{i:05d}.jpg" for i in range(40)]
    assert sorted(arrays) == [im["file_name"] for im in coco["images"]]
    for im in coco["images"]:
        assert arrays[im["file_name"]].shape == (im["height"], im["width"], 3)
        assert arrays[im["file_name"]].dtype == np.uint8
        assert (im["height"], im["width"]) in ShapesSpec().image_sizes
    assert {(im["height"], im["width"]) for im in coco["images"]} == set(ShapesSpec().image_sizes)


def test_annotation_ids_count_up_and_fields_are_coco(default_split):
    coco, _ = default_split
    annotations = coco["annotations"]
    assert [a["id"] for a in annotations] == list(range(1, len(annotations) + 1))
    assert all(a["iscrowd"] == 0 and set(a) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd"}
               for a in annotations)
    assert [a["image_id"] for a in annotations] == sorted(a["image_id"] for a in annotations)


def test_categories_and_category_ids(default_split):
    coco, _ = default_split
    assert coco["categories"] == [
        {"id": 1, "name": "circle", "supercategory": "shape"},
        {"id": 2, "name": "square", "supercategory": "shape"},
        {"id": 3, "name": "triangle", "supercategory": "shape"},
        {"id": 4, "name": "star", "supercategory": "shape"},
    ]
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4}
    assert coco["info"] == {"description": "d2imbalance synthetic shapes (train)", "version": str(shapes.DATA_VERSION)}


def test_objects_per_image_span_one_to_max_objects():
    """max_objects=3, no empty images: every image has 1, 2 or 3 objects, and each count occurs."""
    coco, _ = _generate(ShapesSpec(seed=7, num_train=15, num_val=1, max_objects=3, empty_fraction=0.0))
    counts = Counter(len(anns) for anns in _by_image(coco).values())
    assert len(_by_image(coco)) == 15 and set(counts) == {1, 2, 3}


def test_one_object_per_image_gives_exact_counts(single_object_split):
    coco, _ = single_object_split
    assert len(coco["images"]) == 25 and len(coco["annotations"]) == 25
    assert [a["image_id"] for a in coco["annotations"]] == list(range(1, 26))


# ---------------------------------------------------------------- boxes vs pixels


def test_boxes_are_the_tight_boxes_of_the_drawn_pixels(single_object_split):
    """The object is one flat colour (the most frequent colour in its box, since the background is
    noise): the pixels of that colour in the box fill exactly the box's border rows / columns, and
    their number is the annotation's area."""
    coco, arrays = single_object_split
    images = {im["id"]: im for im in coco["images"]}
    for a in coco["annotations"]:
        x, y, w, h = (int(v) for v in a["bbox"])
        assert [x, y, w, h] == a["bbox"] and w > 0 and h > 0
        image = arrays[images[a["image_id"]]["file_name"]]
        crop = image[y:y + h, x:x + w].reshape(-1, 3)
        colours, counts = np.unique(crop, axis=0, return_counts=True)
        colour = colours[counts.argmax()]
        assert colour.min() >= 40, "objects are drawn in colours of 40..255 per channel"
        mask = (image == colour).all(axis=2)
        ys, xs = np.nonzero(mask[y:y + h, x:x + w])
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (0, 0, w - 1, h - 1)
        assert a["area"] == float(mask[y:y + h, x:x + w].sum())
        # No pixel of that colour touches the box from outside: the box is tight.
        padded = np.pad(mask, 1)[y:y + h + 2, x:x + w + 2]
        assert padded.sum() == mask[y:y + h, x:x + w].sum()


def test_boxes_lie_inside_their_images_and_reach_every_border(default_split):
    """Objects are placed uniformly over the image, whole: boxes stay inside and, over many objects,
    come within a few pixels of each border."""
    coco, _ = default_split
    images = {im["id"]: im for im in coco["images"]}
    gaps = []
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        image = images[a["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= image["width"] and y + h <= image["height"]
        assert 0 < a["area"] <= w * h
        gaps.append((x, y, image["width"] - x - w, image["height"] - y - h))
    assert all(min(g) <= 5 for g in zip(*gaps))


def test_objects_overlap_at_most_max_overlap():
    """With max_overlap=0 objects do not overlap (up to one pixel of rounding) and images still get
    several objects."""
    coco, _ = _generate(ShapesSpec(seed=2, num_train=12, num_val=1, max_overlap=0.0, empty_fraction=0.0))
    per_image = _by_image(coco)
    assert max(len(anns) for anns in per_image.values()) >= 4
    for anns in per_image.values():
        for i, a in enumerate(anns):
            for b in anns[i + 1:]:
                (ax, ay, aw, ah), (bx, by, bw, bh) = a["bbox"], b["bbox"]
                assert min(ax + aw, bx + bw) - max(ax, bx) <= 1 or min(ay + ah, by + bh) - max(ay, by) <= 1


# ---------------------------------------------------------------- size classes, empties


@pytest.mark.parametrize("size_mix,wanted", [((1, 0, 0), "small"), ((0, 1, 0), "medium"), ((0, 0, 1), "large")])
def test_size_mix_selects_the_size_class_of_the_drawn_area(size_mix, wanted):
    """Each shape is drawn with a sqrt(area) from its class's range in _SQRT_AREA_RANGES, for all four
    categories, spread over the range. Rasterising adds boundary pixels: the drawn sqrt(area) can
    exceed the range's top by about a pixel (a star drawn for 31² covers 32.2² pixels), so a few
    "small" draws land just above COCO's 32² and count as medium: at most 10 % here."""
    coco, _ = _generate(ShapesSpec(seed=2, num_train=12, num_val=1, size_mix=size_mix, max_objects=3,
                                   empty_fraction=0.0))
    areas = [a["area"] for a in coco["annotations"]]
    sizes = Counter(size_class(area) for area in areas)
    assert sizes[wanted] >= 0.9 * len(areas)
    assert {a["category_id"] for a in coco["annotations"]} == {1, 2, 3, 4}
    low, high = {"small": (9, 31), "medium": (34, 94), "large": (99, 150)}[wanted]
    sqrt_areas = sorted(math.sqrt(area) for area in areas)
    assert low - 1 <= sqrt_areas[0] < low + 0.3 * (high - low)
    assert high - 0.3 * (high - low) < sqrt_areas[-1] <= high + 2


def test_size_mix_weights_need_not_sum_to_one():
    """(2, 2, 0): half small, half medium objects, no large ones."""
    coco, _ = _generate(ShapesSpec(seed=2, num_train=30, num_val=1, size_mix=(2, 2, 0), max_objects=1,
                                   empty_fraction=0.0))
    sizes = Counter(size_class(a["area"]) for a in coco["annotations"])
    assert set(sizes) == {"small", "medium"} and 8 <= sizes["small"] <= 22


def test_default_mix_has_more_small_than_medium_than_large_objects(default_split):
    coco, _ = default_split
    sizes = Counter(size_class(a["area"]) for a in coco["annotations"])
    assert sizes["small"] > sizes["medium"] > sizes["large"] > 0


@pytest.mark.parametrize("empty_fraction,low,high", [(0.0, 0, 0), (0.5, 12, 28)])
def test_empty_fraction_sets_the_share_of_images_without_objects(empty_fraction, low, high):
    """40 images: none empty at 0; at 0.5 a binomial count, 20 +- 2.5 standard deviations."""
    coco, _ = _generate(ShapesSpec(seed=4, num_train=40, num_val=1, empty_fraction=empty_fraction, max_objects=1))
    empty = 40 - len(_by_image(coco))
    assert low <= empty <= high


def test_default_split_has_negatives(default_split):
    coco, _ = default_split
    assert 1 <= 40 - len(_by_image(coco)) <= 10


def test_size_class_uses_cocos_bounds():
    assert [size_class(a) for a in (0, SMALL_AREA - 1, SMALL_AREA, LARGE_AREA - 1, LARGE_AREA, 1e9)] == [
        "small", "small", "medium", "medium", "large", "large"]
    assert (SMALL_AREA, LARGE_AREA) == (32 * 32, 96 * 96)


# ---------------------------------------------------------------- drawing primitives


@pytest.mark.parametrize("name,vertices", [("circle", 48), ("square", 4), ("triangle", 3), ("star", 10)])
def test_shape_polygons_have_the_area_their_factor_says(name, vertices):
    """Shoelace area / side² equals _AREA_FACTORS (a 48-gon is 0.3% short of the circle): regular
    polygons of circumradius r = side / 2; the square's circumradius is 0.75·√2·r (area 0.5625 side²),
    the star's inner radius 0.45 r (area 10 · ½ · r · 0.45 r · sin 36° = 0.3306 side²)."""
    rng = np.random.default_rng(0)
    polygon = shapes._shape_polygon(name, 50.0, 60.0, 40.0, rng)
    assert polygon.shape == (vertices, 2)
    assert len(np.unique(np.round(polygon, 6), axis=0)) == vertices
    x, y = polygon[:, 0] - 50.0, polygon[:, 1] - 60.0
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    factor = {"circle": math.pi / 4, "square": 0.5625, "triangle": 0.325, "star": 0.33}[name]
    assert area / 40.0**2 == pytest.approx(factor, rel=0.01)
    assert shapes._AREA_FACTORS[name] == factor
    radii = np.hypot(x, y)
    outer = {"circle": 20.0, "square": 20.0 * math.sqrt(2) * 0.75, "triangle": 20.0, "star": 20.0}[name]
    assert radii.max() == pytest.approx(outer)
    if name == "star":
        assert np.allclose(radii[1::2], 0.45 * 20.0) and np.allclose(radii[::2], 20.0)
    else:
        assert np.allclose(radii, outer)


def test_shapes_are_rotated_uniformly():
    """The first vertex of a triangle points anywhere in [0, 2π)."""
    rng = np.random.default_rng(0)
    angles = []
    for _ in range(200):
        x, y = shapes._shape_polygon("triangle", 0.0, 0.0, 10.0, rng)[0]
        angles.append(math.atan2(y, x) % (2 * math.pi))
    assert min(angles) < 0.2 and max(angles) > 2 * math.pi - 0.2
    assert 80 < sum(a < math.pi for a in angles) < 120


def test_unknown_shape_is_rejected():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        shapes._shape_polygon("hexagon", 0.0, 0.0, 10.0, np.random.default_rng(0))


def test_polygon_box_is_clipped_to_the_image():
    polygon = np.array([[-5.0, 30.0], [250.0, -3.0], [120.0, 400.0]])
    assert shapes._polygon_box(polygon, height=100, width=200).tolist() == [0.0, 0.0, 200.0, 100.0]
    polygon = np.array([[10.0, 20.0], [30.0, 25.0], [15.0, 40.0]])
    assert shapes._polygon_box(polygon, height=100, width=200).tolist() == [10.0, 20.0, 30.0, 40.0]
    polygon = np.array([[-10.0, 5.0], [-2.0, 8.0], [-5.0, 20.0]])  # wholly left of the image: no width
    assert shapes._polygon_box(polygon, height=100, width=200).tolist() == [0.0, 5.0, 0.0, 20.0]


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ([0, 0, 10, 10], [5, 5, 15, 15], 25 / 100),  # equal areas
        ([0, 0, 10, 10], [8, 1, 12, 4], 2 * 3 / (4 * 3)),  # b (4x3) is the smaller one
        ([8, 1, 12, 4], [0, 0, 10, 10], 2 * 3 / (4 * 3)),  # symmetric
        ([0, 0, 10, 20], [2, 5, 30, 8], 8 * 3 / (28 * 3)),
        ([1, 2, 11, 22], [4, 7, 30, 10], 7 * 3 / (26 * 3)),  # all coordinates different
        ([4, 7, 30, 10], [1, 2, 11, 22], 7 * 3 / (26 * 3)),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # disjoint
        ([0, 0, 10, 10], [20, 0, 30, 10], 0.0),  # disjoint in x only
        ([0, 0, 10, 10], [0, 20, 10, 30], 0.0),  # disjoint in y only
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching
        ([0, 0, 10, 10], [5, 5, 5, 9], 0.0),  # b has no area
        ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),  # one pixel each, the same pixel
    ],
)
def test_overlap_of_smaller(a, b, expected):
    value = shapes._overlap_of_smaller(np.array(a, float), np.array(b, float))
    assert value == pytest.approx(expected)


def test_backgrounds_are_grainy_noise_not_flat():
    """Smooth colour noise (0..159 on a 32-px grid, cubic-interpolated) plus per-pixel grain uniform
    in -20..20. Neighbouring pixels then differ mostly by the grain: |U - U'| for two independent
    draws from 41 values has P(|D| = d) = 2 (41 - d) / 41² for d > 0 and median 12; the interpolated
    noise alone would change by only a few levels per pixel."""
    image = shapes._textured_background(96, 128, np.random.default_rng(0))
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    step = np.abs(np.diff(image.astype(int), axis=1))
    assert 10 <= np.median(step) <= 13
    assert image.min() == 0 and 150 < np.percentile(image, 99) < 220
    # Images smaller than the 32-px grid still get a (2 x 2-cell) noise background.
    assert shapes._textured_background(16, 20, np.random.default_rng(0)).shape == (16, 20, 3)


# ---------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "kwargs", [dict(size_mix=(1, 1)), dict(size_mix=(1, 1, 1, 1)), dict(size_mix=(-1, 1, 1)), dict(size_mix=(0, 0, 0)),
               dict(empty_fraction=1.0), dict(empty_fraction=-0.1), dict(max_objects=0), dict(num_train=0),
               dict(num_val=0)]
)
def test_bad_spec_is_rejected_with_the_value_named(kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0]).replace("(", r"\(").replace(")", r"\)")):
        ShapesSpec(**kwargs)


def test_smallest_valid_spec_is_accepted():
    spec = ShapesSpec(size_mix=(0, 0, 1), empty_fraction=0.0, max_objects=1, num_train=1, num_val=1)
    assert spec.num_images("train") == 1 and spec.num_images("val") == 1


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split='test' is not one of \\['train', 'val'\\]"):
        build_split(TINY, "test")


def test_the_spec_is_immutable_and_hashable():
    """It is a default argument of several functions, and its fields name the cache."""
    spec = ShapesSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    assert hash(spec) == hash(ShapesSpec()) and spec == ShapesSpec()


def test_fingerprint_names_the_spec_and_its_data_version(monkeypatch):
    assert len(ShapesSpec().fingerprint()) == 10
    assert all(c in "0123456789abcdef" for c in ShapesSpec().fingerprint())
    assert ShapesSpec(seed=1).fingerprint() != ShapesSpec().fingerprint()
    assert ShapesSpec(max_overlap=0.2).fingerprint() != ShapesSpec().fingerprint()
    old = ShapesSpec().fingerprint()
    monkeypatch.setattr(shapes, "DATA_VERSION", shapes.DATA_VERSION + 1)
    assert ShapesSpec().fingerprint() != old


# ---------------------------------------------------------------- the cache on disk


def test_cache_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("D2IMBALANCE_CACHE", "~/somewhere")
    assert default_cache_root() == Path.home() / "somewhere"
    monkeypatch.delenv("D2IMBALANCE_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "d2imbalance"
    monkeypatch.setenv("D2IMBALANCE_CACHE", str(tmp_path))
    assert dataset_paths(TINY).root == tmp_path / f"shapes_{TINY.fingerprint()}"


def test_file_layout(tmp_path):
    paths = ensure_shapes_dataset(TINY, tmp_path / "a" / "b")  # parent directories are created
    root = tmp_path / "a" / "b" / f"shapes_{TINY.fingerprint()}"
    assert paths.root == root
    assert paths.json_files == {"train": root / "train.json", "val": root / "val.json"}
    assert paths.image_roots == {"train": root / "train", "val": root / "val"}
    assert sorted(p.name for p in root.iterdir()) == ["spec.json", "train", "train.json", "val", "val.json"]
    assert (root / "spec.json").read_text() == json.dumps(asdict(TINY), indent=1)  # one field a line
    for split, n in (("train", 3), ("val", 2)):
        coco = json.loads(paths.json_files[split].read_text())
        assert coco == build_split(TINY, split)
        assert sorted(p.name for p in paths.image_roots[split].iterdir()) == [f"{split}_{i:05d}.jpg" for i in range(n)]
        for im in coco["images"]:
            with Image.open(paths.image_roots[split] / im["file_name"]) as file:
                assert file.format == "JPEG" and file.size == (im["width"], im["height"])


def test_write_split_creates_and_rewrites_its_directories(tmp_path):
    out = tmp_path / "x" / "y"
    for _ in range(2):
        json_path = shapes.write_split(TINY, "val", out)
        assert json_path == out / "val.json" and json.loads(json_path.read_text()) == build_split(TINY, "val")
        assert sorted(p.name for p in (out / "val").iterdir()) == ["val_00000.jpg", "val_00001.jpg"]


def test_generation_happens_once(tmp_path, monkeypatch):
    first = ensure_shapes_dataset(TINY, tmp_path)
    monkeypatch.setattr(shapes, "write_split", lambda *a: pytest.fail("regenerated an existing dataset"))
    assert ensure_shapes_dataset(TINY, tmp_path) == first


def test_generation_is_atomic_when_it_fails(tmp_path, monkeypatch):
    """A crash while writing leaves neither the dataset directory nor the temporary one."""
    real = shapes.write_split

    def failing(spec, split, out_dir):
        real(spec, split, out_dir)
        raise RuntimeError("disk full")

    monkeypatch.setattr(shapes, "write_split", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_shapes_dataset(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_process_that_loses_the_race_keeps_the_winners_copy(tmp_path, monkeypatch):
    """Another process finishes first while this one writes into its private temporary directory,
    which sits beside the target (same file system, so the rename is atomic); the loser's rename
    fails, it discards its copy and returns the winner's."""
    real = shapes.write_split
    written_to = []

    def racing(spec, split, out_dir):
        written_to.append(out_dir)
        if split == "val":
            monkeypatch.setattr(shapes, "write_split", real)
            ensure_shapes_dataset(spec, tmp_path)  # the winner
        return real(spec, split, out_dir)

    monkeypatch.setattr(shapes, "write_split", racing)
    paths = ensure_shapes_dataset(TINY, tmp_path)
    assert written_to[0].parent == tmp_path and written_to[0].name.startswith(paths.root.name + ".tmp")
    assert [p.name for p in tmp_path.iterdir()] == [paths.root.name]
    assert json.loads(paths.json_files["val"].read_text()) == build_split(TINY, "val")


def test_an_incomplete_directory_in_the_way_is_an_error(tmp_path):
    paths = dataset_paths(TINY, tmp_path)
    paths.root.mkdir()
    (paths.root / "train.json").write_text("{}")
    with pytest.raises(OSError):
        ensure_shapes_dataset(TINY, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [paths.root.name]


# ---------------------------------------------------------------- the data DATA_VERSION names

# What DATA_VERSION 2 draws. The default spec's fingerprint names the cache directory of the data the
# READMEs' shapes results were trained on; the digests are of TINY's train split. If a change of the
# drawing code makes this test fail, bump DATA_VERSION (so caches of the old data are not reused)
# and update the values.
PINNED_VERSION = 2
PINNED_DEFAULT_FINGERPRINT = "a386b72053"
PINNED_JSON_SHA1 = "e43618e479a08cdf37b29cfc3e9ee6cf1241f6e5"
# Pixels also depend on OpenCV's resize and line drawing: pinned for the version they were taken with.
PINNED_PIXELS = ("5.0.0", "8820ba720cb7fdba7e15f0e622e9640947a4cd16")


def test_generated_data_is_pinned_to_its_data_version():
    import cv2

    assert shapes.DATA_VERSION == PINNED_VERSION
    assert ShapesSpec().fingerprint() == PINNED_DEFAULT_FINGERPRINT
    coco, arrays = _generate(TINY)
    assert hashlib.sha1(json.dumps(coco, sort_keys=True).encode()).hexdigest() == PINNED_JSON_SHA1
    if cv2.__version__ != PINNED_PIXELS[0]:
        pytest.skip(f"pixel digest pinned for OpenCV {PINNED_PIXELS[0]}, this is {cv2.__version__}")
    pixels = hashlib.sha1(b"".join(arrays[name].tobytes() for name in sorted(arrays))).hexdigest()
    assert pixels == PINNED_PIXELS[1]


# Mutation survivors, explained (mutate.py on d2imbalance/data/shapes.py, all 237 mutants):
# - `rng.random() < spec.empty_fraction` -> `<=`: the draw is continuous; a tie has probability 2**-53.
# - `np.asarray(spec.size_mix, dtype=np.float64)` -> no dtype: dividing by the sum gives float64 anyway.
# - `angle + np.arange(n) * step` -> `angle - ...` for the square, triangle and star: the same vertices in
#   the opposite order (each shape is symmetric under that reflection of indices), so fillPoly draws the
#   same pixels; the pixel digest above does not change.
