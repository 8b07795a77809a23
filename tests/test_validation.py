"""The COCO-JSON validator on crafted bad files: each problem is found, counted, named by id with what
is wrong, and comes with its fix. Pure Python (PIL and numpy): no detectron2, fast."""
import json

import numpy as np
import pytest
from PIL import Image

from d2imbalance.data.validation import (
    MAX_IDS_SHOWN,
    DatasetValidationError,
    Problem,
    ValidationReport,
    validate_coco_json,
)

CATEGORIES = ({"id": 1, "name": "a"},)


def _save_image(path, width, height, exif_orientation=None):
    """A noise JPEG (noise, so that its pixel data is large enough to truncate meaningfully)."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    Image.fromarray(pixels).save(path, format="JPEG", **kwargs)


def _write(tmp_path, images, annotations, categories=CATEGORIES, files=True):
    """Write ann.json and (files=True) a real JPEG of the declared size for every image."""
    if files:
        for im in images:
            _save_image(tmp_path / im["file_name"], im["width"], im["height"])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return str(path)


def _image(i, w=100, h=80):
    return {"id": i, "file_name": f"{i}.jpg", "width": w, "height": h}


def _ann(i, image_id, bbox, category_id=1, **extra):
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": 1.0, "iscrowd": 0,
            **extra}


def _problems(tmp_path, images, annotations, **kwargs):
    return validate_coco_json(_write(tmp_path, images, annotations), str(tmp_path), **kwargs).by_kind()


def _one_image_with(tmp_path, annotation, **kwargs):
    """Problems of a one-image dataset with one more annotation beside a clean one."""
    return _problems(tmp_path, [_image(1)], [_ann(100, 1, [10, 10, 20, 20]), annotation], **kwargs)


def test_clean_dataset_has_no_problems(tmp_path):
    path = _write(tmp_path, [_image(1), _image(2)], [_ann(1, 1, [10, 10, 20, 20]), _ann(2, 2, [0, 0, 100, 80])])
    report = validate_coco_json(path, str(tmp_path), dataset="mine", decode_images=True, evaluated=True)
    assert report.problems == []
    assert (report.num_images, report.num_annotations) == (2, 2)
    report.raise_if_fatal()
    assert report.summary() == f"Dataset mine ({path}): 2 images, 2 annotations: no problems found."
    assert validate_coco_json(path).summary() == f"Dataset {path}: 2 images, 2 annotations: no problems found."


def test_each_problem_is_reported_with_ids(tmp_path):
    images = [_image(1), _image(2), _image(2), _image(3), _image(4)]
    annotations = [
        _ann(1, 1, [10, 10, 20, 20], category_id=7),  # unknown category
        _ann(2, 1, [10, 10, 0, 20]),  # zero width
        _ann(3, 1, [10, 10, 20, -5]),  # negative height
        _ann(4, 1, [150, 10, 20, 20]),  # wholly outside (image is 100 wide)
        _ann(5, 1, [90, 10, 20, 20]),  # sticks out by 10 px
        _ann(5, 1, [10, 10, 5, 5]),  # duplicate annotation id 5
        _ann(6, 99, [10, 10, 5, 5]),  # unknown image
        _ann(7, 2, [10, 10, 5, 5]),
    ]
    path = _write(tmp_path, images, annotations)
    (tmp_path / "4.jpg").unlink()
    report = validate_coco_json(path, str(tmp_path))
    problems = report.by_kind()
    assert problems["unknown category ids"].ids == [1]
    assert problems["unknown category ids"].details == ["category_id=7"]
    assert problems["empty boxes"].ids == [2, 3]
    assert problems["boxes outside the image"].ids == [4]
    assert problems["boxes outside the image"].details == ["bbox=[150, 10, 20, 20] in a 100x80 image"]
    assert problems["boxes partly outside the image"].ids == [5] and not problems["boxes partly outside the image"].fatal
    assert problems["duplicate annotation ids"].ids == [5]
    assert problems["duplicate image ids"].ids == [2]
    assert problems["annotations of unknown images"].ids == [6]
    assert problems["annotations of unknown images"].details == ["image_id=99"]
    assert problems["missing image files"].ids == [4]
    assert problems["missing image files"].details == [str(tmp_path / "4.jpg")]
    assert problems["images without annotations"].ids == [3, 4]
    # The report lists kinds in a fixed order, errors before the image-file checks and the empty images.
    assert [p.kind for p in report.problems] == [
        "duplicate image ids", "duplicate annotation ids", "annotations of unknown images", "unknown category ids",
        "empty boxes", "boxes outside the image", "boxes partly outside the image", "missing image files",
        "images without annotations",
    ]


@pytest.mark.parametrize(
    "bbox,outside,partly",
    [
        ([100, 10, 5, 5], True, False),  # x == width: starts at the right edge
        ([10, 80, 5, 5], True, False),  # y == height
        ([-5, 10, 5, 5], True, False),  # x + w == 0: ends at the left edge
        ([10, -5, 5, 5], True, False),  # y + h == 0
        ([99.5, 10, 5, 5], False, True),  # inside by half a pixel, sticks out by 4.5
        ([-1, 10, 5, 5], False, False),  # 1 px out: within OUTSIDE_TOLERANCE
        ([-1.5, 10, 5, 5], False, True),
        ([10, -1, 5, 5], False, False),
        ([10, -1.5, 5, 5], False, True),
        ([96, 10, 5, 5], False, False),  # x + w == width + 1
        ([96.5, 10, 5, 5], False, True),
        ([10, 76, 5, 5], False, False),  # y + h == height + 1
        ([10, 76.5, 5, 5], False, True),
        ([0, 0, 100, 80], False, False),  # the whole image
        ([-0.5, 10, 1, 5], False, False),  # x + w == 0.5: half a pixel inside
        ([10, -0.5, 5, 1], False, False),
        ([10, 10, 0.5, 0.5], False, False),  # tiny, but not empty
    ],
)
def test_outside_boundaries(tmp_path, bbox, outside, partly):
    """Image 100x80, tolerance 1 px: 'outside' means no overlap at all, 'partly' more than 1 px out."""
    problems = _one_image_with(tmp_path, _ann(5, 1, bbox))
    assert ("boxes outside the image" in problems) == outside
    assert ("boxes partly outside the image" in problems) == partly
    assert set(problems) <= {"boxes outside the image", "boxes partly outside the image"}


@pytest.mark.parametrize("bbox", [[10, 10, 0, 5], [10, 10, 5, 0], [10, 10, -1, 5], [10, 10, 5, -1]])
def test_empty_boxes(tmp_path, bbox):
    problem = _one_image_with(tmp_path, _ann(5, 1, bbox))["empty boxes"]
    assert problem.ids == [5] and problem.details == [f"bbox={bbox!r}"] and problem.fatal


@pytest.mark.parametrize(
    "bbox,kind",
    [
        ([float("nan"), 10, 5, 5], "non-finite boxes"),
        ([10, 10, float("nan"), 5], "non-finite boxes"),
        ([10, 10, 5, float("inf")], "non-finite boxes"),
        ([10, float("-inf"), 5, 5], "non-finite boxes"),
        ([10, 10, 5], "malformed boxes"),
        ([10, 10, 5, 5, 1], "malformed boxes"),
        ([], "malformed boxes"),
        (["10", 10, 5, 5], "malformed boxes"),
        ([10, 10, None, 5], "malformed boxes"),
        ([10, 10, True, 5], "malformed boxes"),
        (None, "malformed boxes"),
        ("10,10,5,5", "malformed boxes"),
        ({"x": 10}, "malformed boxes"),
    ],
)
def test_bad_bbox_values_are_named(tmp_path, bbox, kind):
    """A NaN box passed before and detectron2 then dropped it silently; malformed ones raised raw errors."""
    path = _write(tmp_path, [_image(1)], [_ann(100, 1, [10, 10, 20, 20]), _ann(5, 1, bbox)])
    report = validate_coco_json(path, str(tmp_path), dataset="mine")
    assert list(report.by_kind()) == [kind]
    problem = report.by_kind()[kind]
    assert problem.ids == [5] and problem.details == [f"bbox={bbox!r}"] and problem.fatal
    with pytest.raises(DatasetValidationError) as err:
        report.raise_if_fatal()
    text = str(err.value)
    assert f"Dataset mine ({path})" in text and f"(ids: 5 (bbox={bbox!r}))" in text
    assert f"[ERROR] {kind}: 1 annotations have a bbox" in text and "Fix: " in text


def test_the_nan_box_file_as_written_by_json(tmp_path):
    """json.dumps writes NaN / Infinity literals, which json.load reads back as floats."""
    path = tmp_path / "ann.json"
    _save_image(tmp_path / "1.jpg", 100, 80)
    path.write_text('{"images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 80}], '
                    '"annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, Infinity, 2]}], '
                    '"categories": [{"id": 1}]}')
    problem = validate_coco_json(str(path), str(tmp_path)).by_kind()["non-finite boxes"]
    assert problem.ids == [3] and problem.details == ["bbox=[nan, 1, inf, 2]"]


@pytest.mark.parametrize(
    "annotation,label,detail",
    [
        ({"id": 5, "image_id": 1, "category_id": 1}, 5, "no 'bbox'"),
        ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotations[1]", "no 'id'"),
        ({"id": 5, "bbox": [1, 1, 2, 2]}, 5, "no 'image_id', 'category_id'"),
        ({"id": None, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotations[1]", "id=None"),
        ({"id": [5], "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotations[1]", "id=[5]"),
        ({"id": 5, "image_id": [1], "category_id": 1, "bbox": [1, 1, 2, 2]}, 5, "image_id=[1]"),
        ({"id": 5, "image_id": 1, "category_id": None, "bbox": [1, 1, 2, 2]}, 5, "category_id=None"),
        ({"id": 5, "image_id": 1, "category_id": True, "bbox": [1, 1, 2, 2]}, 5, "category_id=True"),
        ("not an annotation", "annotations[1]", "'not an annotation' is not an object"),
    ],
)
def test_malformed_annotation_entries_are_named(tmp_path, annotation, label, detail):
    problems = _one_image_with(tmp_path, annotation)
    assert list(problems) == ["malformed annotation entries"]
    problem = problems["malformed annotation entries"]
    assert problem.ids == [label] and problem.details == [detail] and problem.fatal


@pytest.mark.parametrize(
    "entry,label,detail",
    [
        ({"id": 2, "file_name": "2.jpg", "width": 100}, 2, "no 'height'"),
        ({"file_name": "2.jpg", "width": 100, "height": 80}, "images[1]", "no 'id'"),
        ({"id": 2, "file_name": "2.jpg"}, 2, "no 'width', 'height'"),
        ({"id": 2.5, "file_name": "2.jpg", "width": 100, "height": 80}, "images[1]", "id=2.5"),
        ({"id": 2, "file_name": "", "width": 100, "height": 80}, 2, "file_name=''"),
        ({"id": 2, "file_name": None, "width": 100, "height": 80}, 2, "file_name=None"),
        ({"id": 2, "file_name": "2.jpg", "width": -100, "height": 80}, 2, "width=-100"),
        ({"id": 2, "file_name": "2.jpg", "width": 0, "height": 80}, 2, "width=0"),
        ({"id": 2, "file_name": "2.jpg", "width": 100, "height": 80.5}, 2, "height=80.5"),
        ({"id": 2, "file_name": "2.jpg", "width": "100", "height": 80}, 2, "width='100'"),
        ({"id": 2, "file_name": "2.jpg", "width": True, "height": 80}, 2, "width=True"),
        ({"id": 2, "file_name": "2.jpg", "width": 100, "height": float("nan")}, 2, "height=nan"),
        ([2, "2.jpg"], "images[1]", "[2, '2.jpg'] is not an object"),
    ],
)
def test_malformed_image_entries_are_named(tmp_path, entry, label, detail):
    """The annotation of a malformed image with a usable id is neither an orphan nor size-checked (its box
    lies outside the 100x80 image 1); its file is not read. Without a usable id, the annotation is an orphan."""
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 2, [500, 500, 5, 5])])
    data = json.loads(open(path).read())
    data["images"].append(entry)
    open(path, "w").write(json.dumps(data))
    report = validate_coco_json(path, str(tmp_path))
    orphan = ["annotations of unknown images"] if label != 2 else []
    assert list(report.by_kind()) == ["malformed image entries"] + orphan
    problem = report.by_kind()["malformed image entries"]
    assert problem.ids == [label] and problem.details == [detail] and problem.fatal
    assert report.num_images == 2


def test_float_sizes_that_are_whole_numbers_are_accepted(tmp_path):
    """detectron2 compares (w, h) == (width, height), and 100 == 100.0."""
    _save_image(tmp_path / "1.jpg", 100, 80)
    image = {"id": 1, "file_name": "1.jpg", "width": 100.0, "height": 80.0}
    path = _write(tmp_path, [image], [_ann(1, 1, [1, 1, 5, 5])], files=False)
    assert validate_coco_json(path, str(tmp_path)).problems == []


def test_a_one_pixel_image_with_a_one_pixel_box_is_valid(tmp_path):
    path = _write(tmp_path, [_image(1, w=1, h=1)], [_ann(1, 1, [0, 0, 1, 1])])
    assert validate_coco_json(path, str(tmp_path)).problems == []


def test_duplicates_among_mixed_integer_and_string_ids_are_listed(tmp_path):
    """Sorting 1 and "a" together must not fail: ids are listed in the order of their text."""
    images = [_image(1), _image(1), {**_image(2), "id": "a"}, {**_image(2), "id": "a"}]
    annotations = [_ann(1, 1, [1, 1, 5, 5]), _ann(1, 1, [1, 1, 5, 5]), _ann("b", "a", [1, 1, 5, 5]),
                   _ann("b", "a", [1, 1, 5, 5])]
    problems = _problems(tmp_path, images, annotations)
    assert problems["duplicate image ids"].ids == [1, "a"]
    assert problems["duplicate annotation ids"].ids == [1, "b"]


def test_malformed_categories_are_named(tmp_path):
    categories = [{"id": 1}, {"name": "b"}, "c", {"id": None}]
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [1, 1, 5, 5])], categories=categories)
    problem = validate_coco_json(path, str(tmp_path)).by_kind()["malformed category entries"]
    assert problem.ids == ["categories[1]", "categories[2]", "categories[3]"]
    assert problem.details == ["{'name': 'b'}", "'c'", "{'id': None}"]


def test_string_ids_work_like_integers(tmp_path):
    images = [{"id": "a", "file_name": "a.jpg", "width": 100, "height": 80}, _image(2)]
    annotations = [_ann("x", "a", [1, 1, 5, 5], category_id="c"), _ann("y", "b", [1, 1, 5, 5], category_id="c")]
    path = _write(tmp_path, images, annotations, categories=[{"id": "c"}])
    problems = validate_coco_json(path, str(tmp_path)).by_kind()
    assert problems["annotations of unknown images"].ids == ["y"]
    assert problems["images without annotations"].ids == [2]
    assert set(problems) == {"annotations of unknown images", "images without annotations"}


@pytest.mark.parametrize(
    "content,start",
    [
        (b'{"images": [}', "is not JSON: Expecting value: line 1 column 13 (char 12)"),
        (b"", "is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b"\xff\xd8\xff\xe0 a JPEG, not JSON", "is not JSON: "),
    ],
)
def test_a_file_that_is_not_json_is_named(tmp_path, content, start):
    path = tmp_path / "ann.json"
    path.write_bytes(content)
    report = validate_coco_json(str(path), str(tmp_path), dataset="mine")
    assert [p.kind for p in report.problems] == ["unreadable file"]
    problem = report.problems[0]
    assert problem.ids == [str(path)] and problem.details[0].startswith(start)
    with pytest.raises(DatasetValidationError, match="python -m json.tool FILE"):
        report.raise_if_fatal()
    assert (report.num_images, report.num_annotations) == (0, 0)


def test_a_missing_json_file_is_named(tmp_path):
    path = str(tmp_path / "nowhere.json")
    problem = validate_coco_json(path).by_kind()["unreadable file"]
    assert problem.ids == [path] and problem.details == ["cannot be read: No such file or directory"]


@pytest.mark.parametrize(
    "content,ids,details",
    [
        ([1, 2], ["FILE"], ["the top level is a JSON list, not an object"]),
        ({"images": {"id": 1}}, ["images"], ["'images' is a dict, not a list"]),
        ({"images": [], "annotations": None, "categories": "x"}, ["annotations", "categories"],
         ["'annotations' is a NoneType, not a list", "'categories' is a str, not a list"]),
    ],
)
def test_a_file_without_coco_layout_is_named(tmp_path, content, ids, details):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(content))
    report = validate_coco_json(str(path))
    assert [p.kind for p in report.problems] == ["malformed file"]
    assert report.problems[0].ids == [str(path) if i == "FILE" else i for i in ids]
    assert report.problems[0].details == details and report.problems[0].fatal


def test_a_file_without_images_is_an_error(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"categories": [{"id": 1}]}))
    report = validate_coco_json(str(path))
    assert [p.kind for p in report.problems] == ["no images"] and report.problems[0].fatal
    assert report.problems[0].ids == ["images"]


def test_annotations_and_categories_may_be_absent(tmp_path):
    """A test split without annotations (like COCO's test-dev image info) is valid: its images are empty."""
    _save_image(tmp_path / "1.jpg", 100, 80)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [_image(1)]}))
    report = validate_coco_json(str(path), str(tmp_path))
    assert [p.kind for p in report.problems] == ["images without annotations"]
    assert report.fatal == []


def test_ignore_fields_are_rejected(tmp_path):
    """detectron2's load_coco_json asserts ignore == 0; a zero (or absent) 'ignore' is fine."""
    annotations = [_ann(1, 1, [1, 1, 5, 5], ignore=1), _ann(2, 1, [1, 1, 5, 5], ignore=0), _ann(3, 1, [1, 1, 5, 5])]
    problem = _problems(tmp_path, [_image(1)], annotations)["'ignore' annotations"]
    assert problem.ids == [1] and problem.details == ["ignore=1"] and problem.fatal


@pytest.mark.parametrize(
    "extra,detail",
    [
        (dict(area=None), "area=None"),
        (dict(area=float("nan")), "area=nan"),
        (dict(area="25"), "area='25'"),
        (dict(iscrowd=2), "iscrowd=2"),
        (dict(iscrowd=None), "iscrowd=None"),
    ],
)
def test_evaluated_datasets_need_area_and_iscrowd(tmp_path, extra, detail):
    """COCOeval reads g['area'] and int(g['iscrowd']) of every ground truth: only test sets need them."""
    annotation = _ann(5, 1, [1, 1, 5, 5], **extra)
    assert _one_image_with(tmp_path, annotation) == {}
    problem = _one_image_with(tmp_path, annotation, evaluated=True)["fields COCOeval needs"]
    assert problem.ids == [5] and problem.details == [detail] and problem.fatal


def test_evaluated_annotations_without_the_fields_are_named(tmp_path):
    annotation = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
    problem = _one_image_with(tmp_path, annotation, evaluated=True)["fields COCOeval needs"]
    assert problem.details == ["area=None"]
    annotation["area"] = 25
    assert _one_image_with(tmp_path, annotation, evaluated=True)["fields COCOeval needs"].details == ["iscrowd=None"]
    annotation["iscrowd"] = 1
    assert _one_image_with(tmp_path, annotation, evaluated=True) == {}


def test_empty_and_unreadable_image_files(tmp_path):
    """A zero-byte file and a file of text both crash detectron2's read_image mid-training."""
    path = _write(tmp_path, [_image(1), _image(2), _image(3)], [_ann(i, i, [1, 1, 5, 5]) for i in (1, 2, 3)])
    (tmp_path / "2.jpg").write_bytes(b"")
    (tmp_path / "3.jpg").write_bytes(b"not an image at all")
    problems = validate_coco_json(path, str(tmp_path)).by_kind()
    assert set(problems) == {"empty image files", "unreadable image files"}
    assert problems["empty image files"].ids == [2]
    assert problems["empty image files"].details == [str(tmp_path / "2.jpg")]
    assert problems["unreadable image files"].ids == [3]
    assert problems["unreadable image files"].details == [f"cannot identify image file {str(tmp_path / '3.jpg')!r}"]
    assert problems["empty image files"].fatal and problems["unreadable image files"].fatal


def test_sizes_that_disagree_with_the_file_are_named(tmp_path):
    path = _write(tmp_path, [_image(1), _image(2, w=64, h=48)], [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 2, [1, 1, 5, 5])])
    _save_image(tmp_path / "2.jpg", 48, 64)  # the JSON says 64 wide, 48 high: transposed
    problem = validate_coco_json(path, str(tmp_path)).by_kind()["image sizes disagree with the JSON"]
    assert problem.ids == [2] and problem.fatal
    assert problem.details == [f"{tmp_path / '2.jpg'}: JSON 64x48, file 48x64 (width x height)"]
    _save_image(tmp_path / "2.jpg", 64, 47)  # one pixel short
    problem = validate_coco_json(path, str(tmp_path)).by_kind()["image sizes disagree with the JSON"]
    assert problem.details == [f"{tmp_path / '2.jpg'}: JSON 64x48, file 64x47 (width x height)"]


@pytest.mark.parametrize("orientation,swapped", [(1, False), (3, False), (5, True), (6, True), (7, True), (8, True)])
def test_exif_rotation_is_applied_as_detectron2_does(tmp_path, orientation, swapped):
    """A 100x80 file with EXIF orientation 5-8 is read by detectron2 as 80 wide, 100 high."""
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [1, 1, 5, 5])])
    _save_image(tmp_path / "1.jpg", 100, 80, exif_orientation=orientation)
    mismatch = "image sizes disagree with the JSON" in validate_coco_json(path, str(tmp_path)).by_kind()
    assert mismatch == swapped
    data = json.loads(open(path).read())
    data["images"][0].update(width=80, height=100)
    open(path, "w").write(json.dumps(data))
    problems = validate_coco_json(path, str(tmp_path)).by_kind()
    assert ("image sizes disagree with the JSON" in problems) == (not swapped)
    if not swapped:
        assert problems["image sizes disagree with the JSON"].details[0].endswith("JSON 80x100, file 100x80 (width x height)")


def test_truncated_images_are_found_only_when_decoding(tmp_path):
    """The header of a half-written JPEG reads fine; its pixel data does not (detectron2 fails mid-run)."""
    path = _write(tmp_path, [_image(1), _image(2)], [_ann(1, 1, [1, 1, 5, 5]), _ann(2, 2, [1, 1, 5, 5])])
    data = (tmp_path / "2.jpg").read_bytes()
    (tmp_path / "2.jpg").write_bytes(data[: len(data) // 2])
    assert validate_coco_json(path, str(tmp_path)).problems == []
    problem = validate_coco_json(path, str(tmp_path), decode_images=True).by_kind()["undecodable image files"]
    assert problem.ids == [2] and problem.fatal
    assert problem.details[0].startswith(f"{tmp_path / '2.jpg'}: image file is truncated")


def test_without_image_root_files_are_not_looked_at(tmp_path):
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [1, 1, 5, 5])], files=False)
    assert validate_coco_json(path).problems == []
    assert validate_coco_json(path, str(tmp_path)).by_kind()["missing image files"].ids == [1]


def test_fatal_problems_stop_with_a_message_that_names_ids_and_fix(tmp_path):
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [10, 10, 20, 20], category_id=5)])
    report = validate_coco_json(path, str(tmp_path), dataset="mine")
    with pytest.raises(DatasetValidationError) as err:
        report.raise_if_fatal()
    assert str(err.value) == (
        f"Dataset mine ({path}): 1 images, 1 annotations. Found:\n"
        "  [ERROR] unknown category ids: 1 annotations have a category_id not in categories [1] "
        "(ids: 1 (category_id=5)). Fix: add the category to 'categories' or correct the annotation's "
        "category_id.\n"
        "Training stopped: fix the ERROR lines above (or set train.validate_datasets=False to skip these "
        "checks at your own risk)."
    )


def test_warnings_and_information_do_not_stop(tmp_path):
    report = validate_coco_json(
        _write(tmp_path, [_image(1), _image(2)], [_ann(1, 1, [95, 10, 20, 20])]), str(tmp_path), empty_images="drop"
    )
    assert [p.severity for p in report.problems] == ["warning", "warning"]
    assert report.fatal == []
    report.raise_if_fatal()


@pytest.mark.parametrize(
    "policy,severity,fix",
    [
        ("keep", "info", ""),
        ("drop", "warning", "set filter_empty=False in this dataloader's dataset to keep them as negatives."),
        ("error", "error", "annotate them or remove them from the JSON."),
    ],
)
def test_empty_image_policy(tmp_path, policy, severity, fix):
    path = _write(tmp_path, [_image(1), _image(2)], [_ann(1, 1, [10, 10, 20, 20])])
    problem = validate_coco_json(path, str(tmp_path), empty_images=policy).by_kind()["images without annotations"]
    assert problem.ids == [2] and problem.severity == severity and problem.fix == fix
    assert problem.fatal == (policy == "error")


def test_describe_shortens_long_id_lists_but_counts_them():
    problem = Problem("k", "warning", what="things")
    for i in range(MAX_IDS_SHOWN + 3):
        problem.add(i, "d" if i == 1 else "")
    assert problem.count == 13
    assert problem.describe() == "[WARNING] k: 13 things (ids: 0, 1 (d), 2, 3, 4, 5, 6, 7, 8, 9 and 3 more)."
    problem = Problem("k", "info", what="things", fix="do it.")
    for i in range(MAX_IDS_SHOWN):
        problem.add(i)
    assert problem.describe() == "[INFO] k: 10 things (ids: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9). Fix: do it."


def test_long_id_lists_are_shortened_but_counted(tmp_path):
    images = [_image(i) for i in range(1, 30)]
    report = validate_coco_json(_write(tmp_path, images, [], files=False), str(tmp_path))
    missing = report.by_kind()["missing image files"]
    assert missing.count == 29 and "and 19 more" in missing.describe()


def test_summary_lists_every_problem():
    report = ValidationReport("d", "f.json", 3, 4)
    report.problems = [Problem("a", "error", what="x"), Problem("b", "info", what="y")]
    report.problems[0].add(1)
    report.problems[1].add(2)
    assert report.summary() == (
        "Dataset d (f.json): 3 images, 4 annotations. Found:\n"
        "  [ERROR] a: 1 x (ids: 1).\n"
        "  [INFO] b: 1 y (ids: 2)."
    )
    assert [p.kind for p in report.fatal] == ["a"]


def test_unknown_policy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="'sometimes'"):
        validate_coco_json(_write(tmp_path, [_image(1)], []), empty_images="sometimes")
