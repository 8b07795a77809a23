#!/usr/bin/env python
"""Misalignment statistics (Table 1), their proportions (Fig. 2) and the class-score vs IoU scatter
(Fig. 1) of Wu et al.,
"Improvement of Classification in One-Stage Detector", for a trained RetinaNet-style checkpoint.

Example (after training the shapes demo):
    python tools/misalignment_analysis.py --config-file configs/ObjConf/retinanet_conf_shapes.py \\
        --checkpoint output/retinanet_conf_shapes/model_final.pth --dataset shapes_val \\
        --output-dir output/retinanet_conf_shapes/misalignment

Writes table1.md / .csv / .json, fig2_proportions.md / .png and scatter_cls_vs_iou.png (plus
scatter_fused_vs_iou.png for models with a confidence branch) into --output-dir, and prints both
tables. "Before NMS" follows the paper (MMDetection: top 1000 anchors per level, then every class
above the score threshold) unless --candidates detectron2 (the 1000 best pairs per level, what the
model's own NMS sees).
"""

import argparse
import sys

from d2imbalance import get_config_file
from d2imbalance._compat import require_detectron2
from d2imbalance.analysis.misalignment import CANDIDATE_RULES


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, help="LazyConfig file or name under configs/"
    )
    parser.add_argument(
        "--checkpoint", required=True, help="weights of a model trained with that config"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="registered dataset name (default: the config's test dataset)",
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument(
        "--num-images", type=int, default=10, help="images with ground truth to analyse (paper: 10)"
    )
    parser.add_argument(
        "--scatter-images", type=int, default=3, help="per-image columns in the scatter (paper: 3)"
    )
    parser.add_argument(
        "--candidates",
        choices=CANDIDATE_RULES,
        default="paper",
        help="'Before NMS' rule per level: 'paper' = top-k anchors, then every (anchor, class) "
        "pair above the score threshold (Table 1); 'detectron2' = the top-k pairs above it",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides, e.g. model.fusion_alpha=0.3"
    )
    args = parser.parse_args(argv)

    require_detectron2("tools/misalignment_analysis.py")
    from detectron2.config import LazyConfig

    from d2imbalance.analysis.misalignment import (
        format_proportions,
        format_table,
        run_misalignment_analysis,
    )

    cfg = LazyConfig.apply_overrides(LazyConfig.load(get_config_file(args.config_file)), args.opts)
    images, paths = run_misalignment_analysis(
        cfg,
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        output_dir=args.output_dir,
        num_images=args.num_images,
        device=args.device,
        max_columns=args.scatter_images,
        candidates=args.candidates,
    )
    print(format_table(images))
    print()
    print("Fig. 2 proportions (% of the stage's candidates):")
    print(format_proportions(images))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
