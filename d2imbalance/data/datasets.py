"""Registration of the datasets train_net knows by name, in every process that imports this module.

Importing it registers ``shapes_train`` / ``shapes_val`` and the 36-image ``shapes_mini_train`` /
``shapes_mini_val`` (generated on first use, see :mod:`d2imbalance.data.shapes`). detectron2's builtin COCO names (``coco_2017_train`` ...) come with
detectron2 itself and read ``$DETECTRON2_DATASETS``. Datasets declared in a config
(``train.datasets``) are registered by :func:`register_coco_datasets`.
"""
import os
from typing import Callable, Dict, Iterable, Mapping

from .._compat import require_detectron2
from .shapes import CATEGORIES, ShapesSpec, dataset_paths, ensure_shapes_dataset

require_detectron2("d2imbalance.data.datasets")
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import load_coco_json, register_coco_instances  # noqa: E402

# Datasets whose files are produced on demand: name -> function that makes sure they exist.
_PREPARERS: Dict[str, Callable[[], None]] = {}


def register_shapes(spec: ShapesSpec = ShapesSpec(), cache_root=None, prefix: str = "shapes") -> None:
    """Register ``{prefix}_train`` / ``{prefix}_val``; files are generated when first needed."""
    paths = dataset_paths(spec, cache_root)

    def prepare():
        ensure_shapes_dataset(spec, cache_root)

    for split in ("train", "val"):
        name = f"{prefix}_{split}"
        if name in DatasetCatalog.list():
            continue
        json_file, image_root = str(paths.json_files[split]), str(paths.image_roots[split])

        def load(json_file=json_file, image_root=image_root, name=name):
            prepare()
            return load_coco_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=json_file, image_root=image_root, evaluator_type="coco", thing_classes=list(CATEGORIES)
        )
        _PREPARERS[name] = prepare


def prepare_datasets(names: Iterable[str]) -> None:
    """Create the files of on-demand datasets among ``names`` (a no-op for the others).

    Call before building an evaluator: COCOEvaluator reads the dataset's json_file when constructed.
    """
    for name in names:
        if name in _PREPARERS:
            _PREPARERS[name]()


def register_coco_datasets(declared: Iterable[Mapping]) -> None:
    """Register COCO-format datasets declared in a config as ``dict(name=, json_file=, image_root=)``.

    Raises:
        ValueError: naming the entry with a missing key, or a name already registered elsewhere.
    """
    for entry in declared:
        missing = {"name", "json_file", "image_root"} - set(entry)
        if missing:
            raise ValueError(
                f"train.datasets entry {dict(entry)} lacks {sorted(missing)}; each entry needs "
                "name, json_file and image_root."
            )
        name = entry["name"]
        if name in DatasetCatalog.list():
            known = MetadataCatalog.get(name).get("json_file")
            if known and os.path.abspath(known) == os.path.abspath(entry["json_file"]):
                continue
            raise ValueError(
                f"Dataset name {name!r} in train.datasets is already registered (json_file={known}); "
                "choose another name."
            )
        register_coco_instances(name, {}, entry["json_file"], entry["image_root"])


def dataset_names(spec) -> list:
    """The list of names in a ``get_detection_dataset_dicts(names=...)`` field (str or list)."""
    return [spec] if isinstance(spec, str) else list(spec)


register_shapes()
# A 24 + 12 image variant for smoke tests and quick checks of a config.
register_shapes(ShapesSpec(num_train=24, num_val=12), prefix="shapes_mini")
