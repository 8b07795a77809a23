"""The COCO-JSON validator on crafted bad files: each problem is found, counted and named by id."""
import json

import pytest

from d2imbalance.data.validation import DatasetValidationError, validate_coco_json


def _write(tmp_path, images, annotations, categories=({"id": 1, "name": "a"},), files=True):
    for im in images:
        if files:
            (tmp_path / im["file_name"]).write_bytes(b"x")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return str(path)


def _image(i, w=100, h=80):
    return {"id": i, "file_name": f"{i}.jpg", "width": w, "height": h}


def _ann(i, image_id, bbox, category_id=1):
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": 1.0, "iscrowd": 0}


def test_clean_dataset_has_no_problems(tmp_path):
    report = validate_coco_json(_write(tmp_path, [_image(1)], [_ann(1, 1, [10, 10, 20, 20])]), str(tmp_path))
    assert report.problems == []
    report.raise_if_fatal()
    assert "no problems" in report.summary()


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
    problems = validate_coco_json(path, str(tmp_path)).by_kind()
    assert problems["unknown category ids"].ids == [1]
    assert problems["empty boxes"].ids == [2, 3]
    assert problems["boxes outside the image"].ids == [4]
    assert problems["boxes partly outside the image"].ids == [5] and not problems["boxes partly outside the image"].fatal
    assert problems["duplicate annotation ids"].ids == [5]
    assert problems["duplicate image ids"].ids == [2]
    assert problems["annotations of unknown images"].ids == [6]
    assert problems["missing image files"].ids == [4]
    assert sorted(problems["images without annotations"].ids) == [3, 4]


def test_fatal_problems_stop_with_a_message_that_names_ids_and_fix(tmp_path):
    path = _write(tmp_path, [_image(1)], [_ann(1, 1, [10, 10, 20, 20], category_id=5)])
    report = validate_coco_json(path, str(tmp_path), dataset="mine")
    with pytest.raises(DatasetValidationError) as err:
        report.raise_if_fatal()
    text = str(err.value)
    assert "mine" in text and "unknown category ids: 1 " in text and "(ids: 1)" in text and "Fix:" in text


@pytest.mark.parametrize("policy,severity", [("keep", "info"), ("drop", "warning"), ("error", "error")])
def test_empty_image_policy(tmp_path, policy, severity):
    path = _write(tmp_path, [_image(1), _image(2)], [_ann(1, 1, [10, 10, 20, 20])])
    problem = validate_coco_json(path, str(tmp_path), empty_images=policy).by_kind()["images without annotations"]
    assert problem.ids == [2] and problem.severity == severity


def test_long_id_lists_are_shortened_but_counted(tmp_path):
    images = [_image(i) for i in range(1, 30)]
    report = validate_coco_json(_write(tmp_path, images, [], files=False), str(tmp_path))
    missing = report.by_kind()["missing image files"]
    assert missing.count == 29 and "and 19 more" in missing.describe()


def test_unknown_policy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="'sometimes'"):
        validate_coco_json(_write(tmp_path, [_image(1)], []), empty_images="sometimes")
