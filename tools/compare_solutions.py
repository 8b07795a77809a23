#!/usr/bin/env python
"""Train, benchmark and tabulate imbalance solutions against their baselines (the review's Table 1).

    # every solution's shapes config against its baseline, 3 seeds each (CPU or the GPUs present):
    python tools/compare_solutions.py --list shapes --seeds 0 1 2 --output-dir output/comparison_shapes
    # on 2 CPU cores or 8 GPUs, small runs side by side: --jobs 2 / --jobs 8
    # the same command again resumes an interrupted comparison (finished runs are skipped);
    # --dry-run prints what it would train, resume or skip and exits
    python tools/compare_solutions.py --list coco_r50_fpn_1x --seeds 0 1 --num-gpus 8 \
        --output-dir output/comparison_coco
    # your own entries (a JSON list of {"label", "config", "baseline"}), overrides for every run at the end
    python tools/compare_solutions.py --entries my_entries.json --seeds 0 1 --output-dir out train.max_iter=200
    python tools/compare_solutions.py --show-lists

Writes <output-dir>/<name>.md (the table), .json (every number), .png (ΔAP against the train-step ratio)
and .log (the progress). The logic lives in d2imbalance.analysis.comparison, the shipped lists in
d2imbalance.analysis.solution_lists.
"""
import argparse
import logging
import os
import sys

from d2imbalance.analysis.comparison import Comparison, load_entries
from d2imbalance.analysis.solution_lists import COMPARISONS, DESCRIPTIONS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--list", choices=sorted(COMPARISONS), help="a shipped comparison (see --show-lists)")
    which.add_argument("--entries", metavar="JSON", help='a JSON list of {"label", "config", "baseline"} objects')
    which.add_argument("--show-lists", action="store_true", help="print the shipped comparisons and exit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="train.seed of each run (default 0 1 2)")
    parser.add_argument("--output-dir", help="runs, benchmarks and outputs (default output/comparison_<name>)")
    parser.add_argument("--name", help="stem of the output files (default: the list's name, or 'comparison')")
    parser.add_argument("--num-gpus", type=int, default=1, help="--num-gpus of every train_net.py run")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each on its own --num-gpus GPUs, or on CPU on cpu_count / jobs "
                             "threads (default 1)")  # fmt: skip
    parser.add_argument("--train-net", help="path of train_net.py (default: the repository's)")
    parser.add_argument("--dry-run", action="store_true", help="print the runs to train / resume / skip and exit")
    bench = parser.add_argument_group("benchmark (tools/benchmark.py's settings, for every pair)")
    bench.add_argument("--benchmark-device", help="default: cuda if available, else cpu")
    bench.add_argument("--benchmark-image-size", type=int, default=320, help="an entry may set its own (SSD300: 300)")
    bench.add_argument("--benchmark-batch", type=int, default=2)
    bench.add_argument("--benchmark-iters", type=int, default=20)
    bench.add_argument("--benchmark-warmup", type=int, default=3)
    bench.add_argument("--benchmark-amp", action="store_true")
    bench.add_argument("--benchmark-override", action="append", default=[], metavar="KEY=VALUE",
                       help="config override of both models of every benchmark")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of every training run")
    return parser


def show_lists() -> None:
    for name, entries in COMPARISONS.items():
        print(f"{name}: {DESCRIPTIONS[name]}")
        for e in entries:
            print(f"    {e.label:24} {e.config:52} vs {e.baseline}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.show_lists:
        show_lists()
        return 0
    try:
        entries = COMPARISONS[args.list] if args.list else load_entries(args.entries)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    name = args.name or args.list or "comparison"
    output_dir = args.output_dir or f"output/comparison_{name}"

    import torch

    # The lanes share the GPUs this process sees, named as CUDA_VISIBLE_DEVICES names them.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu_count = torch.cuda.device_count()
    gpu_ids = ([d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(gpu_count)])
    gpu_ids = gpu_ids[:gpu_count]
    settings = dict(
        image_size=args.benchmark_image_size, batch=args.benchmark_batch, iters=args.benchmark_iters,
        warmup=args.benchmark_warmup, device=args.benchmark_device or ("cuda" if torch.cuda.is_available() else "cpu"),
        amp=args.benchmark_amp, overrides=list(args.benchmark_override),
    )  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s comparison] %(message)s", datefmt="%m/%d %H:%M:%S")
    try:
        comparison = Comparison(
            entries, args.seeds, output_dir, name=name, description=DESCRIPTIONS.get(args.list or "", ""),
            overrides=args.overrides, num_gpus=args.num_gpus, jobs=args.jobs, gpu_ids=gpu_ids,
            train_net=args.train_net, benchmark_settings=settings,
        )  # fmt: skip
    except ValueError as e:
        parser.error(str(e))
    comparison.output_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(comparison.output_dir / f"{name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.getLogger("d2imbalance.comparison").addHandler(handler)

    if args.dry_run:
        for config, info in comparison.infos.items():
            params = ", ".join(f"{h.name}={value}" for h, value in info.hyperparameters) or "none"
            print(f"{config}: {info.model_class}, max_iter {info.max_iter}, hyper-parameters: {params}")
        for lane, env in enumerate(comparison.lane_env, 1):
            settings_text = " ".join(f"{k}={v}" for k, v in env.items()) or "the whole machine"
            print(f"lane {lane}/{comparison.jobs}: {settings_text}")
        for run, state in comparison.plan():
            action = {"finished": "skip  ", "interrupted": "resume", "new": "train "}[state]
            command = "" if state == "finished" else "  $ " + " ".join(comparison.job(run, state == "interrupted").command)
            print(f"{action} {run.config} seed {run.seed} ({run.output_dir}){command}")
        for entry in comparison.entries:
            cached = "cached" if comparison.benchmark_path(entry).is_file() else "to measure"
            print(f"benchmark {entry.label}: {cached} ({comparison.benchmark_path(entry)})")
        return 0
    comparison.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
