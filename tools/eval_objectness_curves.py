#!/usr/bin/env python
"""Figs. 2 and 4 of the ResObj paper for a training run: average objectness of positive and negative
anchors per step t, over a dataset (the config's test set, COCO minival in the paper), for every
checkpoint of the run. Every anchor is given o_t = o_0 + r_1 + ... + r_t (no gate, as at inference).

    python tools/eval_objectness_curves.py --config-file configs/ResObj/retinanet_resobj_shapes.py \\
        --checkpoints runs/retinanet_resobj -o runs/retinanet_resobj/objectness_curves

Writes <output>.json (one line per checkpoint, keys eval_objectness/obj_pos_t{t}, obj_neg_t{t},
num_pos, num_neg, num_images) and <output>.png. Checkpoints are written every train.checkpointer.period
iterations; train with a small period (e.g. 100) to get enough points. Trailing key=value arguments
override the config, as in train_net.py.
"""
import argparse

from d2imbalance._compat import require_detectron2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="a RetinaNet-ResObj config (path or name under configs/)")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="run directories and/or checkpoint files")
    parser.add_argument("-o", "--output", required=True, help="output path without extension (.json and .png are written)")
    parser.add_argument("--dataset", default=None, help="registered dataset with annotations (default: the config's test set)")
    parser.add_argument("--max-images", type=int, default=None, help="only the first images of the dataset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides key=value")
    args = parser.parse_args(argv)

    require_detectron2("tools/eval_objectness_curves.py")
    from detectron2.config import LazyConfig

    from d2imbalance.model_zoo import get_config_file
    from resobj.curves import evaluate_objectness_curves, write_curve_records
    from resobj.visualize import plot_objectness_curves

    cfg = LazyConfig.apply_overrides(LazyConfig.load(get_config_file(args.config_file)), args.opts)
    results = evaluate_objectness_curves(
        cfg, args.checkpoints, dataset=args.dataset, max_images=args.max_images, device=args.device
    )
    for iteration, stats in results:
        steps = sorted(int(k[len("obj_pos_t"):]) for k in stats if k.startswith("obj_pos_t"))
        cells = "  ".join(f"t{t}: pos {stats[f'obj_pos_t{t}']:.4f} neg {stats[f'obj_neg_t{t}']:.5f}" for t in steps)
        print(f"iteration {iteration}: {cells}  ({int(stats['num_pos'])} pos / {int(stats['num_neg'])} neg anchors)")
    print(write_curve_records(results, args.output + ".json"))
    print(plot_objectness_curves(args.output + ".json", args.output + ".png"))


if __name__ == "__main__":
    main()
