#!/usr/bin/env python
"""Draw one image's RetinaNet-ResObj detections with the objectness of each step t = 0..T (paper Fig. 5).

    python tools/draw_resobj_steps.py --config-file ResObj/retinanet_resobj_shapes.py \
        --checkpoint output/retinanet_resobj_shapes/model_final.pth --image img.png -o steps.png

Trailing key=value arguments override the config, as in train_net.py.
"""
import argparse
import os

from d2imbalance._compat import require_detectron2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="a RetinaNet-ResObj config (path or name under configs/)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint; default <train.output_dir>/model_final.pth")
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("-o", "--output", default="resobj_steps.png", help="PNG to write")
    parser.add_argument("--score-thresh", type=float, default=0.4, help="draw scores above this (Fig. 5: 0.4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    args = parser.parse_args(argv)

    require_detectron2("tools/draw_resobj_steps.py")
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import MetadataCatalog
    from detectron2.data.detection_utils import convert_image_to_rgb, read_image

    import d2imbalance.data.datasets  # noqa: F401  (registers the shapes datasets for class names)
    from d2imbalance.checkpoint import load_checkpoint_with_report
    from d2imbalance.model_zoo import get_config_file
    from resobj.visualize import detections_per_step, draw_detection_steps

    cfg = LazyConfig.apply_overrides(LazyConfig.load(get_config_file(args.config_file)), args.opts)
    weights = args.checkpoint or os.path.join(cfg.train.output_dir, "model_final.pth")
    model = instantiate(cfg.model).to(args.device)
    print(load_checkpoint_with_report(model, weights).describe())
    image = read_image(args.image, format=model.input_format)
    detections = detections_per_step(model, image, instantiate(cfg.dataloader.test.mapper.augmentations))
    names = cfg.dataloader.test.dataset.names
    names = [names] if isinstance(names, str) else list(names)
    class_names = MetadataCatalog.get(names[0]).get("thing_classes", None) if names else None
    rgb = convert_image_to_rgb(image, model.input_format)
    print(draw_detection_steps(rgb, detections, args.output, score_thresh=args.score_thresh, class_names=class_names))


if __name__ == "__main__":
    main()
