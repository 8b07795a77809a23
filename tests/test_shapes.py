"""The embedded shapes dataset: deterministic, well-formed, and the knobs do what they say."""
import json
from collections import Counter

import pytest

from d2imbalance.data.shapes import CATEGORIES, ShapesSpec, build_split, ensure_shapes_dataset, size_class

SMALL_SPEC = ShapesSpec(seed=3, num_train=40, num_val=10)


def test_same_seed_gives_identical_json(tmp_path):
    first = ensure_shapes_dataset(SMALL_SPEC, tmp_path / "a")
    second = ensure_shapes_dataset(SMALL_SPEC, tmp_path / "b")
    for split in ("train", "val"):
        assert first.json_files[split].read_bytes() == second.json_files[split].read_bytes()
    other_seed = build_split(ShapesSpec(seed=4, num_train=40, num_val=10), "train")
    assert other_seed["annotations"] != json.loads(first.json_files["train"].read_text())["annotations"]


def test_annotations_lie_inside_their_images_with_files_on_disk(tmp_path):
    paths = ensure_shapes_dataset(SMALL_SPEC, tmp_path)
    coco = json.loads(paths.json_files["train"].read_text())
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == 40 and coco["annotations"]
    assert {c["name"] for c in coco["categories"]} == set(CATEGORIES)
    for im in coco["images"]:
        assert (paths.image_roots["train"] / im["file_name"]).is_file()
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        image = images[ann["image_id"]]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= image["width"] and y + h <= image["height"]
        assert 0 < ann["area"] <= w * h


def test_split_has_negatives_and_every_size_class():
    coco = build_split(ShapesSpec(seed=0, num_train=200, num_val=10), "train")
    annotated = {a["image_id"] for a in coco["annotations"]}
    assert any(im["id"] not in annotated for im in coco["images"]), "expected some images without objects"
    sizes = Counter(size_class(a["area"]) for a in coco["annotations"])
    assert sizes["small"] > sizes["medium"] > 0 and sizes["large"] > 0
    per_image = Counter(a["image_id"] for a in coco["annotations"])
    assert max(per_image.values()) > 1


def test_size_mix_knob_sets_the_proportions():
    only_large = build_split(ShapesSpec(num_train=30, num_val=5, size_mix=(0, 0, 1)), "train")
    sizes = Counter(size_class(a["area"]) for a in only_large["annotations"])
    assert sizes["large"] > 0.8 * sum(sizes.values())


@pytest.mark.parametrize(
    "kwargs", [dict(size_mix=(1, 1)), dict(size_mix=(-1, 1, 1)), dict(empty_fraction=1.0), dict(max_objects=0)]
)
def test_bad_spec_is_rejected_with_the_value_named(kwargs):
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0]).replace("(", r"\(").replace(")", r"\)")):
        ShapesSpec(**kwargs)
