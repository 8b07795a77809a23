#!/usr/bin/env python
"""Print a markdown table of the final box AP of training runs (the first label is the baseline).

    python tools/compare_runs.py RetinaNet=output/retinanet_shapes ResObj=output/retinanet_resobj_shapes
    # seeds: repeat a label; its row shows mean ± std over the runs. More columns with --metric:
    python tools/compare_runs.py SSD=out/ssd_s0 SSD=out/ssd_s1 SSD=out/ssd_s2 SCB=out/scb_s0 SCB=out/scb_s1 \
        SCB=out/scb_s2 --metric recall_by_size/recall_small@0.3
"""
import argparse

from d2imbalance.analysis.compare_runs import markdown_table, parse_run_argument

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=OUTPUT_DIR")
    parser.add_argument("--metric", action="append", default=[], metavar="KEY",
                        help="another final metric as metrics.json names it, e.g. recall_by_size/recall_small@0.3")
    args = parser.parse_args()
    try:
        pairs = [parse_run_argument(item) for item in args.runs]
    except ValueError as e:
        parser.error(str(e))
    try:
        print(markdown_table(pairs, args.metric))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
