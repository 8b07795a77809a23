"""Side-by-side pictures of ground truth and a model's predictions on a registered dataset.

Works for any config and checkpoint (detectron2's demo only serves its own model-zoo models): the
model sees images exactly as the config's test dataloader feeds them.
"""
from typing import Optional, Sequence

import numpy as np
import torch

from ._compat import require_detectron2

require_detectron2("d2imbalance.visualize")
from detectron2.config import instantiate  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402

from .checkpoint import ReportingCheckpointer  # noqa: E402
from .data.datasets import prepare_datasets  # noqa: E402
from .model_zoo import get_config  # noqa: E402


def draw_predictions(
    config: str,
    checkpoint: str,
    dataset: str,
    output: str,
    *,
    num_images: int = 6,
    score_thresh: float = 0.3,
    overrides: Sequence[str] = (),
    device: Optional[str] = None,
) -> str:
    """Write a PNG with one row per image: ground truth (left), predictions above ``score_thresh``
    (right, labelled with class and score). Returns ``output``."""
    import cv2
    from detectron2.config import LazyConfig

    if num_images < 1:
        raise ValueError(f"num_images={num_images} must be at least 1.")
    cfg = LazyConfig.apply_overrides(get_config(config), list(overrides))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = instantiate(cfg.model).to(device).eval()
    ReportingCheckpointer(model).load(checkpoint)
    prepare_datasets([dataset])
    records = DatasetCatalog.get(dataset)[:num_images]
    metadata = MetadataCatalog.get(dataset)
    mapper = instantiate(cfg.dataloader.test.mapper)

    rows = []
    for record in records:
        image_rgb = cv2.imread(record["file_name"])[:, :, ::-1]
        with torch.no_grad():
            instances = model([mapper(dict(record))])[0]["instances"].to("cpu")
        instances = instances[instances.scores > score_thresh]
        truth = Visualizer(image_rgb, metadata).draw_dataset_dict(record).get_image()
        predicted = Visualizer(image_rgb, metadata).draw_instance_predictions(instances).get_image()
        rows.append(np.concatenate([truth, predicted], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    cv2.imwrite(output, np.concatenate(rows, axis=0)[:, :, ::-1])
    return output
