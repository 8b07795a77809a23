#!/usr/bin/env python
"""Print a markdown table of the final COCO AP of training runs (the first is the baseline).

    python tools/compare_runs.py RetinaNet=output/retinanet_shapes ResObj=output/retinanet_resobj_shapes
"""
import argparse

from d2imbalance.analysis.compare_runs import markdown_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=OUTPUT_DIR")
    args = parser.parse_args()
    pairs = []
    for item in args.runs:
        if "=" not in item:
            parser.error(f"{item!r} is not LABEL=OUTPUT_DIR, e.g. RetinaNet=output/retinanet_shapes")
        pairs.append(tuple(item.split("=", 1)))
    print(markdown_table(pairs))
