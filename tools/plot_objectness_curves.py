#!/usr/bin/env python
"""Plot mean positive / negative objectness per residual step over training (paper Figs. 2 and 4).

    python tools/plot_objectness_curves.py output/retinanet_resobj_shapes/metrics.json -o curves.png

Reads the ``resobj/obj_pos_t{t}`` / ``resobj/obj_neg_t{t}`` scalars that RetinaNet-ResObj writes each
iteration (``rpn_resobj/...`` for FasterRCNN-ResObj; pick with --prefix).
"""
import argparse

from resobj.visualize import plot_objectness_curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", help="metrics.json written by train_net.py in train.output_dir")
    parser.add_argument("-o", "--output", default="objectness_curves.png", help="PNG to write")
    parser.add_argument("--prefix", default=None, help='scalar prefix, e.g. "resobj/" or "rpn_resobj/" (default: first found)')
    args = parser.parse_args(argv)
    print(plot_objectness_curves(args.metrics, args.output, args.prefix))


if __name__ == "__main__":
    main()
