#!/usr/bin/env python
"""Draw ground truth (left) and a trained model's predictions (right) for the first images of a dataset.

    python tools/visualize_predictions.py --config-file ResObj/retinanet_resobj_shapes.py \
        --checkpoint output/retinanet_resobj_shapes/model_final.pth --dataset shapes_val --output preds.png
"""
import argparse

from d2imbalance.visualize import draw_predictions

# Imported for their registrations, so method configs build.
import objconf  # noqa: F401
import resobj  # noqa: F401
import scale_balanced  # noqa: F401

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="config path or name")
    parser.add_argument("--checkpoint", required=True, help="weights: file, http(s) or detectron2:// URL")
    parser.add_argument("--dataset", required=True, help="a registered dataset, e.g. shapes_val")
    parser.add_argument("--output", default="predictions.png")
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--score-thresh", type=float, default=0.3)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    args = parser.parse_args()
    path = draw_predictions(
        args.config_file, args.checkpoint, args.dataset, args.output,
        num_images=args.num_images, score_thresh=args.score_thresh, overrides=args.opts,
    )
    print(f"Wrote {path}")
