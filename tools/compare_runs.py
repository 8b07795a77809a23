#!/usr/bin/env python
"""Print a markdown table of the final COCO AP of training runs (the first is the baseline).

    python tools/compare_runs.py RetinaNet=output/retinanet_shapes ResObj=output/retinanet_resobj_shapes
"""
import argparse

from d2imbalance.analysis.compare_runs import markdown_table, parse_run_argument

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=OUTPUT_DIR")
    args = parser.parse_args()
    try:
        pairs = [parse_run_argument(item) for item in args.runs]
    except ValueError as e:
        parser.error(str(e))
    print(markdown_table(pairs))
