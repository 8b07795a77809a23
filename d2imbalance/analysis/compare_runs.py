"""A markdown table of the final box AP (and any other final metric) of several training runs, read from
their metrics.json.

Used to put a method beside its baseline trained the same way. Runs given the same label are seeds of
one setting: their row shows mean ± std (sample standard deviation) over the runs, so a difference can
be read against the spread. Pure Python: no detectron2.
"""
import json
import math
import statistics
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def final_metrics(output_dir: str, extra_keys: Sequence[str] = ()) -> Dict:
    """Last evaluation of a run, its last iteration and its median seconds per iteration.

    Args:
        extra_keys: more metrics of the last evaluation, as metrics.json names them
            (e.g. "recall_by_size/recall_small@0.3").

    Raises:
        FileNotFoundError / ValueError naming the directory when it has no metrics, no evaluation or
        no ``extra_keys`` entry. AP keys an evaluator does not report (VOC has no APs) are NaN.
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
    missing = [k for k in extra_keys if k not in last]
    if missing:
        known = sorted(k for k in last if k not in ("iteration",))
        raise ValueError(f"{path}'s last evaluation has no {missing}; it has {known}.")
    return {
        "iteration": last["iteration"],
        "ap": {key: last.get(f"bbox/{key}", float("nan")) for key in AP_KEYS},
        "extra": {key: last[key] for key in extra_keys},
        "sec_per_iter": statistics.median(times) if times else float("nan"),
    }


def mean_std_cell(values: Sequence[float], fmt: str = ".1f") -> str:
    """One run: its value; several: mean ± sample std; NaN (not reported): "-"."""
    if any(math.isnan(v) for v in values):
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def parse_run_argument(item: str) -> Tuple[str, str]:
    """``"LABEL=OUTPUT_DIR"`` -> (label, dir), split at the last "=" so labels may hold one ("T=2")."""
    label, sep, output_dir = item.rpartition("=")
    if not sep or not label or not output_dir:
        raise ValueError(f"{item!r} is not LABEL=OUTPUT_DIR, e.g. RetinaNet=output/retinanet_shapes")
    return label, output_dir


def markdown_table(runs: Sequence[Tuple[str, str]], extra_keys: Sequence[str] = ()) -> str:
    """``runs``: (label, output_dir) pairs; runs sharing a label form one row (mean ± std over them).
    The first label is the baseline the ΔAP column refers to (difference of the means).
    ``extra_keys``: metrics.json names of more columns (see :func:`final_metrics`)."""
    groups: Dict[str, List[Dict]] = {}
    for label, output_dir in runs:
        groups.setdefault(label, []).append(final_metrics(output_dir, extra_keys))
    base = statistics.mean(r["ap"]["AP"] for r in next(iter(groups.values())))
    extra_names = [k.rsplit("/", 1)[-1] for k in extra_keys]
    lines = [
        "| run | runs | iterations | " + " | ".join([*AP_KEYS, *extra_names]) + " | ΔAP | s/iter |",
        "|---|---:|---:|" + "---:|" * (len(AP_KEYS) + len(extra_names) + 2),
    ]
    for label, results in groups.items():
        iterations = sorted({r["iteration"] for r in results})
        cells = [mean_std_cell([r["ap"][k] for r in results]) for k in AP_KEYS]
        cells += [mean_std_cell([r["extra"][k] for r in results]) for k in extra_keys]
        delta = statistics.mean(r["ap"]["AP"] for r in results) - base
        seconds = statistics.mean(r["sec_per_iter"] for r in results)
        lines.append(
            f"| {label} | {len(results)} | {'/'.join(map(str, iterations))} | {' | '.join(cells)} | "
            f"{delta:+.1f} | {seconds:.2f} |"
        )
    return "\n".join(lines)
