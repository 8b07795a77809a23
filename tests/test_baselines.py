"""One seeded training step and inference per baseline config, on CPU."""
import pytest

pytestmark = pytest.mark.detectron2

BASELINES = [
    "Baselines/retinanet_shapes.py",
    "Baselines/faster_rcnn_shapes.py",
    "Baselines/retinanet_R_50_FPN_1x.py",
    "Baselines/faster_rcnn_R_50_FPN_1x.py",
]


def _two_images(num_classes):
    import torch
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(0)
    batch = []
    for boxes in ([[20.0, 30.0, 90.0, 120.0], [120.0, 40.0, 180.0, 100.0]], []):
        instances = Instances((200, 250))
        instances.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        instances.gt_classes = torch.arange(len(boxes)) % num_classes
        image = torch.randint(0, 256, (3, 200, 250), generator=g, dtype=torch.uint8).float()
        batch.append({"image": image, "instances": instances, "height": 200, "width": 250})
    return batch


@pytest.mark.parametrize("name", BASELINES)
def test_seeded_training_step_and_inference(name):
    import torch
    from detectron2.config import instantiate
    from detectron2.utils.events import EventStorage

    from d2imbalance import get_config

    torch.manual_seed(0)
    model = instantiate(get_config(name).model)
    num_classes = getattr(model, "num_classes", None) or model.roi_heads.num_classes
    batch = _two_images(num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    with EventStorage():
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total) and total > 0, losses
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    assert len(outputs) == 2
    for output in outputs:
        instances = output["instances"]
        assert instances.image_size == (200, 250)
        assert len(instances) <= 100 and torch.isfinite(instances.pred_boxes.tensor).all()
