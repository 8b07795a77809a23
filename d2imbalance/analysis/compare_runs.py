"""A markdown table of the final COCO box AP of several training runs, read from their metrics.json.

Used to put a method beside its baseline trained the same way. Pure Python: no detectron2.
"""
import json
import statistics
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def final_metrics(output_dir: str) -> Dict:
    """Last evaluation of a run, its last iteration and its median seconds per iteration.

    Raises:
        FileNotFoundError / ValueError naming the directory when it has no metrics or no evaluation.
    """
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a train.output_dir of a finished run.")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    evaluations = [r for r in rows if "bbox/AP" in r]
    if not evaluations:
        raise ValueError(f"{path} holds no bbox evaluation; train with train.eval_period > 0 or run --eval-only.")
    times = [r["time"] for r in rows if "time" in r]
    last = evaluations[-1]
    return {
        "iteration": last["iteration"],
        "ap": {key: last[f"bbox/{key}"] for key in AP_KEYS},
        "sec_per_iter": statistics.median(times) if times else float("nan"),
    }


def parse_run_argument(item: str) -> Tuple[str, str]:
    """``"LABEL=OUTPUT_DIR"`` -> (label, dir), split at the last "=" so labels may hold one ("T=2")."""
    label, sep, output_dir = item.rpartition("=")
    if not sep or not label or not output_dir:
        raise ValueError(f"{item!r} is not LABEL=OUTPUT_DIR, e.g. RetinaNet=output/retinanet_shapes")
    return label, output_dir


def markdown_table(runs: Sequence[Tuple[str, str]]) -> str:
    """``runs``: (label, output_dir) pairs; the first is the baseline the ΔAP column refers to."""
    results: List[Tuple[str, Dict]] = [(label, final_metrics(d)) for label, d in runs]
    base_ap = results[0][1]["ap"]["AP"]
    lines = [
        "| run | iterations | " + " | ".join(AP_KEYS) + " | ΔAP | s/iter |",
        "|---|---:|" + "---:|" * (len(AP_KEYS) + 2),
    ]
    for label, result in results:
        ap = result["ap"]
        cells = " | ".join(f"{ap[k]:.1f}" for k in AP_KEYS)
        lines.append(
            f"| {label} | {result['iteration']} | {cells} | {ap['AP'] - base_ap:+.1f} | {result['sec_per_iter']:.2f} |"
        )
    return "\n".join(lines)
