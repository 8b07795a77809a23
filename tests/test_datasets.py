"""Dataset registration: the shapes datasets by name (generated on first use), and COCO-format datasets
declared in a config."""
import pytest

from d2imbalance.data.shapes import CATEGORIES, ShapesSpec, dataset_paths

pytestmark = pytest.mark.detectron2

TINY = ShapesSpec(seed=5, num_train=3, num_val=2)


def test_importing_registers_shapes_and_shapes_mini():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import d2imbalance.data.datasets  # noqa: F401  (registers on import)

    for prefix, spec in (("shapes", ShapesSpec()), ("shapes_mini", ShapesSpec(num_train=24, num_val=12))):
        paths = dataset_paths(spec)
        for split in ("train", "val"):
            name = f"{prefix}_{split}"
            assert name in DatasetCatalog.list()
            metadata = MetadataCatalog.get(name)
            assert metadata.json_file == str(paths.json_files[split])
            assert metadata.image_root == str(paths.image_roots[split])
            assert metadata.evaluator_type == "coco" and metadata.thing_classes == list(CATEGORIES)


def test_shapes_are_generated_on_first_load_and_registered_once(tmp_path):
    from detectron2.data import DatasetCatalog

    from d2imbalance.data.datasets import register_shapes

    paths = dataset_paths(TINY, tmp_path)
    register_shapes(TINY, tmp_path, prefix="tiny_a")
    assert not paths.root.exists()  # registration alone writes nothing
    register_shapes(TINY, tmp_path, prefix="tiny_a")  # again: a no-op, not "already registered"
    records = DatasetCatalog.get("tiny_a_val")
    assert len(records) == 2 and paths.json_files["train"].is_file()
    assert records[0]["file_name"] == str(paths.image_roots["val"] / "val_00000.jpg")
    assert [r["image_id"] for r in records] == [1, 2]


def test_prepare_datasets_generates_only_on_demand_datasets(tmp_path):
    from d2imbalance.data.datasets import prepare_datasets, register_shapes

    register_shapes(TINY, tmp_path, prefix="tiny_b")
    prepare_datasets(["coco_2017_train"])  # not on-demand: nothing to do, no error
    assert not dataset_paths(TINY, tmp_path).root.exists()
    prepare_datasets(["coco_2017_train", "tiny_b_val"])
    paths = dataset_paths(TINY, tmp_path)
    assert paths.json_files["train"].is_file() and paths.json_files["val"].is_file()


def test_datasets_declared_in_a_config_are_registered_once(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from d2imbalance.data.datasets import register_coco_datasets

    entry = dict(name="declared_a", json_file=str(tmp_path / "a.json"), image_root=str(tmp_path))
    register_coco_datasets([entry])
    assert MetadataCatalog.get("declared_a").json_file == str(tmp_path / "a.json")
    assert MetadataCatalog.get("declared_a").image_root == str(tmp_path)
    # The same declaration again (every process, and --eval-only, re-reads the config): accepted.
    register_coco_datasets([dict(entry, json_file=str(tmp_path / "." / "a.json"))])
    with pytest.raises(ValueError, match=r"'declared_a' in train.datasets is already registered \(json_file="):
        register_coco_datasets([dict(entry, json_file=str(tmp_path / "b.json"))])
    DatasetCatalog.register("declared_b", lambda: [])  # registered in code, without a json_file
    with pytest.raises(ValueError, match=r"'declared_b' .* already registered \(json_file=None\)"):
        register_coco_datasets([dict(entry, name="declared_b")])


@pytest.mark.parametrize("missing", ["name", "json_file", "image_root"])
def test_a_declared_dataset_lacking_a_key_is_named(missing):
    from d2imbalance.data.datasets import register_coco_datasets

    entry = dict(name="declared_c", json_file="a.json", image_root=".")
    del entry[missing]
    with pytest.raises(ValueError, match=rf"lacks \['{missing}'\]; each entry needs name, json_file and image_root"):
        register_coco_datasets([entry])


def test_dataset_names_accepts_a_name_or_a_list():
    from d2imbalance.data.datasets import dataset_names

    assert dataset_names("a") == ["a"]
    assert dataset_names(["a", "b"]) == ["a", "b"]
    assert dataset_names(("a",)) == ["a"]
