#!/usr/bin/env python
"""Plot mean positive / negative objectness per residual step over training.

    python tools/plot_objectness_curves.py output/retinanet_resobj_shapes/metrics.json -o curves.png

From a run's metrics.json it plots the training-batch scalars ``train/resobj/obj_pos_t{t}`` /
``obj_neg_t{t}`` that RetinaNet-ResObj writes each iteration (``train/rpn_resobj/`` for
FasterRCNN-ResObj; pick with --prefix): gated o_t on the batch being trained, not the paper's figures.
The paper's Figs. 2 and 4 (every anchor of a held-out set given o_0 + sum r_t) come from
tools/eval_objectness_curves.py, whose .json this tool also plots (prefix ``eval_objectness/``).
"""
import argparse

from resobj.visualize import plot_objectness_curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="metrics.json of a training run, or the .json of tools/eval_objectness_curves.py")
    parser.add_argument("-o", "--output", default="objectness_curves.png", help="PNG to write")
    parser.add_argument("--prefix", default=None, help='scalar prefix, e.g. "train/resobj/", "train/rpn_resobj/" or "eval_objectness/" (default: first found)')
    args = parser.parse_args(argv)
    print(plot_objectness_curves(args.metrics, args.output, args.prefix))


if __name__ == "__main__":
    main()
