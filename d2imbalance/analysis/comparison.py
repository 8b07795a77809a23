"""Side-by-side comparison of imbalance solutions: the review's Table 1 (papers/001), measured here.

Input: a list of :class:`Entry` (a solution's label, its config and its baseline's config; the shipped
lists are in :mod:`d2imbalance.analysis.solution_lists`) and the seeds. :class:`Comparison`

1. reads every config (``LazyConfig.load``, no model built): its ``train.max_iter`` and the
   hyper-parameters its model class declares (:mod:`~d2imbalance.analysis.hyperparameters`);
2. trains every config x seed that has no result yet, each as its own ``train_net.py`` process
   (:func:`train_in_subprocess`; see "Why a process per run"), ``jobs`` of them at once (see "Lanes"),
   logging after each run how many are done, the time elapsed and the ETA (the mean duration of this
   session's runs times the runs left, divided by the lanes);
3. measures each method against its baseline with :func:`d2imbalance.benchmark.run_benchmark`
   (train-step, peak-memory and inference ratios), caching the result as JSON;
4. writes ``<name>.md`` (the table), ``<name>.json`` (every number) and ``<name>.png`` (ΔAP against
   the train-step ratio) into the output directory.

**Skip and resume rule.** Run (config, seed) lives in ``<output>/<config name>/seed<seed>``. It is
*finished* when its metrics.json holds a bbox evaluation at iteration >= the config's
``train.max_iter`` (detectron2 records the evaluation after the last step at iteration max_iter), and
is then skipped. A run that is not finished but has a checkpoint (``last_checkpoint``) was interrupted
and restarts with ``--resume`` (the engine continues its iterations and data stream); any other run
starts from scratch. A cached benchmark is reused when it was measured with the same settings and
configs. So an interrupted comparison is resumed by running the same command again.

**ΔAP and its spread.** ΔAP = mean(AP of the method's seeds) - mean(AP of the baseline's seeds).
Its spread is sqrt(s_m^2 + s_b^2), s the sample standard deviation over seeds of each side: the
standard deviation of the difference between one method run and one baseline run with independent
seeds, in the same sense as the "± std" of the AP cells. The JSON also gives the standard error of
the difference of the means, sqrt(s_m^2 / n_m + s_b^2 / n_b), which shrinks with more seeds. With one
seed on either side the spread is unknown (NaN in the JSON, not shown in the table).

**Why a process per run.** A run is exactly ``python train_net.py --config-file C --num-gpus N
[--resume] train.seed=S train.output_dir=D [overrides]``: the code path a user runs, with
``--num-gpus`` passed to detectron2's ``launch`` unchanged (one process, several GPU processes, or
several CPU processes with gloo). Calling ``launch_from_args`` in this process instead would leave a
process group, registered datasets, logger handlers, CUDA memory and global seeds behind after each
run, each of which the next run would inherit, and one crashing run would end the whole comparison.

**Lanes.** ``jobs`` > 1 trains that many runs at once, each lane on its own share of the machine
(:func:`lane_environments`): on GPUs, lane k sees only its ``num_gpus`` devices through
CUDA_VISIBLE_DEVICES; on CPU, each lane gets cpu_count // jobs threads (OMP_NUM_THREADS and
MKL_NUM_THREADS, unless already set). Several small runs side by side use a machine better than one
run after another: a shapes run cannot keep 8 GPUs, or even 2 CPU cores, busy.

Pure Python: detectron2 (config loading, benchmark) is imported only by the functions that need it,
so everything else can be used and tested without it.
"""
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..progress import Progress
from .compare_runs import final_metrics, mean_std_cell
from .hyperparameters import COMPOSITE_DETECTORS, Hyperparameter, declared_hyperparameters, qualified_name

__all__ = [
    "Entry",
    "ConfigInfo",
    "Run",
    "TrainingJob",
    "Comparison",
    "load_entries",
    "describe_config",
    "config_hyperparameters",
    "train_in_subprocess",
    "lane_environments",
    "run_benchmark_in_process",
    "run_state",
    "delta_ap",
    "sample_std",
    "markdown_table",
    "plot_delta_ap",
    "SPREAD_FORMULA",
]

logger = logging.getLogger("d2imbalance.comparison")

SPREAD_FORMULA = "sqrt(s_method^2 + s_baseline^2), s = sample std over seeds"
STDERR_FORMULA = "sqrt(s_method^2 / n_method + s_baseline^2 / n_baseline)"
#: metrics.json keys of the table's AP columns (compare_runs.AP_KEYS names).
TABLE_AP_KEYS = ("AP", "APs", "APm", "APl")
#: run_benchmark's ratio keys -> the names used in the table and the JSON.
RATIO_KEYS = {"train_step": "train_step_ms", "memory": "peak_memory_mib", "inference": "inference_ms_per_image"}
RUN_RECORD = "comparison_run.json"  # in each run directory: the config, seed and overrides it was trained with
TRAIN_LOG = "comparison_train.log"  # in each run directory: train_net.py's stdout and stderr
_ENTRY_KEYS = ("label", "config", "baseline", "detector", "baseline_label", "benchmark")


@dataclass(frozen=True)
class Entry:
    """One solution of a comparison.

    Attributes:
        label: the solution's name in the table ("RetinaNet-ResObj").
        config: its config, a path or a name relative to configs/ ("ResObj/retinanet_resobj_shapes.py").
        baseline: the config it is compared with, the one its config derives from.
        detector: the detector column ("RetinaNet"); default: the baseline's label.
        baseline_label: the baseline's row label; default: the baseline config's file name.
        benchmark: benchmark settings for this pair over the comparison's (e.g. {"image_size": 300});
            "overrides" are added to the comparison's, and "{image_size}" in them becomes the image
            size used.
    """

    label: str
    config: str
    baseline: str
    detector: str = ""
    baseline_label: str = ""
    benchmark: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        if not self.label or not self.config or not self.baseline:
            raise ValueError(f"An entry needs a label, a config and a baseline config; got {self!r}.")
        if self.config == self.baseline:
            raise ValueError(f"Entry {self.label!r} compares {self.config} with itself; give its baseline's config.")

    @property
    def baseline_name(self) -> str:
        return self.baseline_label or Path(self.baseline).stem

    @property
    def detector_name(self) -> str:
        return self.detector or self.baseline_name


def load_entries(path: str) -> Tuple[Entry, ...]:
    """Entries from a JSON file: a list of objects with keys label, config, baseline and optionally
    detector, baseline_label, benchmark (see :class:`Entry`), or {"entries": [...]}.

    Raises:
        ValueError: naming the file and the entry with an unknown or missing key.
    """
    data = json.loads(Path(path).read_text())
    items = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ValueError(f"{path} must hold a non-empty list of entries (or {{\"entries\": [...]}}).")
    entries = []
    for i, item in enumerate(items):
        unknown = sorted(set(item) - set(_ENTRY_KEYS)) if isinstance(item, dict) else None
        if unknown is None or unknown:
            raise ValueError(f"{path}, entry {i}: {item!r} has unknown keys {unknown}; the keys are {list(_ENTRY_KEYS)}.")
        try:
            entries.append(Entry(**item))
        except TypeError as e:
            raise ValueError(f"{path}, entry {i}: {e} (label, config and baseline are required).") from None
    return tuple(entries)


@dataclass(frozen=True)
class ConfigInfo:
    """What the comparison reads from a config, without building its model.

    Attributes:
        max_iter: ``train.max_iter`` after the comparison's overrides.
        model_class: qualified name of ``model._target_``.
        hyperparameters: (declaration, the config's value) for each declared hyper-parameter.
        parts: for a composite detector (GeneralizedRCNN), the qualified class name of each part
            ({"proposal_generator": "resobj.rpn.ResObjRPN", ...}); empty for other detectors.
    """

    config: str
    max_iter: int
    model_class: str
    hyperparameters: Tuple[Tuple[Hyperparameter, Any], ...]
    parts: Mapping[str, Optional[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    config: str
    seed: int
    output_dir: Path
    max_iter: int


@dataclass(frozen=True)
class TrainingJob:
    """What the trainer gets: the run, whether it resumes, the train_net.py command line, its log, and
    the environment variables its lane sets (:func:`lane_environments`)."""

    run: Run
    resume: bool
    command: Tuple[str, ...]
    log_file: Path
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Reading configs (detectron2)


def _as_class(target):
    """A config's ``_target_``: the class itself, or a dotted name located (imported, not built)."""
    if not isinstance(target, str):
        return target
    from detectron2.utils.registry import locate

    return locate(target)


def _config_value(node, dotted: str, default):
    for key in dotted.split("."):
        try:
            if key not in node:
                return default
            node = node[key]
        except TypeError:  # not a mapping
            return default
    return node if isinstance(node, (int, float, str, bool, type(None))) else str(node)


def config_hyperparameters(model_cfg) -> Tuple[str, Dict[str, Optional[str]], Tuple[Tuple[Hyperparameter, Any], ...]]:
    """(qualified model class, {part: qualified class} of a composite detector, ((declaration, value in
    the config), ...)) of a config's ``model`` node.

    The class comes from ``model._target_`` (a class or a dotted name, located without building
    anything). For a composite detector (GeneralizedRCNN) the parts' classes come from
    ``model.proposal_generator._target_`` and ``model.roi_heads._target_`` (see
    :func:`~d2imbalance.analysis.hyperparameters.declared_hyperparameters`). A hyper-parameter the
    config does not set has the declared default (the constructor's).
    """
    model_class = _as_class(model_cfg["_target_"])
    part_keys = {key for keys in COMPOSITE_DETECTORS.values() for key in keys}
    parts = {}
    for key in part_keys:
        if key in model_cfg:
            node = model_cfg[key]
            parts[key] = _as_class(node["_target_"]) if node is not None and "_target_" in node else None
    declared = declared_hyperparameters(model_class, parts)
    composite = any(qualified_name(c) in COMPOSITE_DETECTORS for c in model_class.__mro__)
    part_names = {k: c and qualified_name(c) for k, c in sorted(parts.items())} if composite else {}
    values = tuple((h, _config_value(model_cfg, h.name, h.default)) for h in declared)
    return qualified_name(model_class), part_names, values


def describe_config(config: str, overrides: Sequence[str] = ()) -> ConfigInfo:
    """Load ``config`` (a path or a name under configs/) with ``overrides`` and read its
    :class:`ConfigInfo`. Needs detectron2 and the config's project package."""
    from ..model_zoo import get_config
    from ..overrides import apply_overrides

    cfg = apply_overrides(get_config(config), list(overrides))
    model_class, parts, hyperparameters = config_hyperparameters(cfg.model)
    return ConfigInfo(config, int(cfg.train.max_iter), model_class, hyperparameters, parts)


# ------------------------------------------------------------------------------------------------
# Runs


def config_slug(config: str) -> str:
    """The run-directory name of a config: its name under configs/ without ".py"
    ("configs/ResObj/x.py" and "ResObj/x.py" -> "ResObj/x"; a file elsewhere: its parent/stem)."""
    path = Path(config)
    parts = [p for p in path.with_suffix("").parts if p not in ("/", "..", ".")]
    if "configs" in parts:
        parts = parts[len(parts) - parts[::-1].index("configs"):]
    elif path.is_absolute():
        parts = parts[-2:]
    return "/".join(parts)


def run_state(run: Run) -> str:
    """"finished" (a bbox evaluation at iteration >= max_iter in metrics.json), "interrupted" (not
    finished, has a checkpoint: resume it) or "new"."""
    try:
        if final_metrics(str(run.output_dir))["iteration"] >= run.max_iter:
            return "finished"
    except (FileNotFoundError, ValueError):
        pass
    return "interrupted" if (run.output_dir / "last_checkpoint").is_file() else "new"


def train_in_subprocess(job: TrainingJob) -> None:
    """Run ``job.command`` (train_net.py), its output appended to ``job.log_file``.

    Raises:
        RuntimeError: the process failed; the message has the command and the log's last lines.
    """
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_file, "a") as log:
        log.write(f"\n$ {shlex.join(job.command)}\n")
        log.flush()
        env = {**os.environ, **job.env}
        code = subprocess.run(list(job.command), stdout=log, stderr=subprocess.STDOUT, cwd=job.cwd, env=env).returncode
    if code != 0:
        tail = "\n".join(job.log_file.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(
            f"Training {job.run.config} (seed {job.run.seed}) failed with exit code {code}:\n  "
            f"{shlex.join(job.command)}\nLast lines of {job.log_file}:\n{tail}\nFix the cause and run the "
            "comparison again: finished runs are skipped, this one resumes from its last checkpoint."
        )


def lane_environments(
    jobs: int, num_gpus: int, gpu_ids: Sequence[str], cpu_count: int, environ: Mapping[str, str]
) -> List[Dict[str, str]]:
    """The environment variables of each of ``jobs`` training lanes (see "Lanes").

    Args:
        jobs: runs trained at once.
        num_gpus: ``--num-gpus`` of each run.
        gpu_ids: the GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (empty: CPU).
        cpu_count: CPU cores, shared among CPU lanes.
        environ: this process's environment; thread counts already set there are kept.

    Returns:
        One dict per lane; empty dicts for a single lane (the run gets the whole machine, as alone).

    Raises:
        ValueError: the lanes need more GPUs than ``gpu_ids`` has.
    """
    if jobs == 1:
        return [{}]
    if gpu_ids:
        if jobs * num_gpus > len(gpu_ids):
            raise ValueError(
                f"jobs={jobs} lanes x num_gpus={num_gpus} need {jobs * num_gpus} GPUs, {len(gpu_ids)} visible "
                f"({','.join(gpu_ids)}); lower --jobs or --num-gpus."
            )
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids[k * num_gpus:(k + 1) * num_gpus])} for k in range(jobs)]
    threads = str(max(1, cpu_count // jobs))
    return [{k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k not in environ} for _ in range(jobs)]


def run_benchmark_in_process(method: str, baseline: str, settings: Mapping[str, Any]) -> Dict:
    """:func:`d2imbalance.benchmark.run_benchmark` with ``settings`` as BenchmarkSettings keywords."""
    from ..benchmark import BenchmarkSettings, run_benchmark

    kwargs = dict(settings)
    kwargs["overrides"] = tuple(kwargs.get("overrides", ()))
    return run_benchmark(method, baseline, BenchmarkSettings(**kwargs))


# ------------------------------------------------------------------------------------------------
# Statistics and text


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); NaN for fewer than two values or a NaN value."""
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return float("nan")
    return statistics.stdev(values)


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def delta_ap(method: Sequence[float], baseline: Sequence[float]) -> Dict[str, float]:
    """ΔAP of the means, its spread sqrt(s_m^2 + s_b^2) and the standard error of the difference of
    the means sqrt(s_m^2/n_m + s_b^2/n_b) (see the module docstring); NaN where undefined."""
    s_m, s_b = sample_std(method), sample_std(baseline)
    return {
        "delta": _mean(method) - _mean(baseline),
        "spread": math.sqrt(s_m**2 + s_b**2),
        "stderr": math.sqrt(s_m**2 / len(method) + s_b**2 / len(baseline)),
    }


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)


def _json_safe(obj):
    """NaN -> None (valid JSON), tuples -> lists, recursively."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _nan(x):
    return float("nan") if x is None else x


def _ratio_cell(x) -> str:
    return f"{x:.2f}" if _finite(x) else "-"


def _delta_cell(row: Mapping) -> str:
    delta, spread = _nan(row["delta_ap"]), _nan(row["delta_ap_spread"])
    if not _finite(delta):
        return "-"
    return f"{delta:+.1f} ± {spread:.1f}" if _finite(spread) else f"{delta:+.1f}"


def markdown_table(summary: Mapping) -> str:
    """The review's Table 1 layout for a :meth:`Comparison.summary`: one row per baseline, followed by
    its solutions; then the notes saying how each column was computed."""
    head = ["Solution", "Detector", "Seeds", "AP", "ΔAP", "AP_s", "AP_m", "AP_l", "# hyper-parameters",
            "Train step", "Memory", "Inference"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for row in summary["rows"]:
        method = row["kind"] == "method"
        ap = [mean_std_cell([_nan(r["ap"][k]) for r in row["runs"]]) for k in TABLE_AP_KEYS]
        ratios = [_ratio_cell(_nan(row["ratios"][k])) if method else "-" for k in RATIO_KEYS]
        cells = [row["label"], row["detector"], str(len(row["runs"])), ap[0], _delta_cell(row) if method else "-",
                 *ap[1:], str(row["num_hyperparameters"]), *ratios]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, summary["seeds"]))
    bench = summary["benchmark_settings"]
    bench_text = ", ".join(f"{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in bench.items() if v != [])
    lines += [
        "",
        f"AP, AP_s, AP_m, AP_l: box AP (%) of each run's final evaluation (iteration max_iter), mean ± sample "
        f"std over seeds {seeds}. ΔAP: mean(solution) - mean(baseline) ± {SPREAD_FORMULA} (the standard error "
        f"of the difference of the means, {STDERR_FORMULA}, is in the JSON). # hyper-parameters: the "
        "HYPERPARAMETERS its model class declares (d2imbalance/analysis/hyperparameters.py; listed with their "
        "values in the JSON). Train step, Memory, Inference: solution / baseline ratios of the median training "
        "step, the peak memory and the median inference time per image, measured by d2imbalance.benchmark on "
        f"identical synthetic batches ({bench_text}; per-solution settings in the JSON).",
    ]
    if summary.get("overrides"):
        lines.append(f"Every run was trained with the overrides {' '.join(summary['overrides'])}.")
    return "\n".join(lines) + "\n"


def plot_delta_ap(summary: Mapping, path: str) -> None:
    """ΔAP against the train-step ratio, one point per solution, error bars the ΔAP spread; written
    to ``path`` (PNG) with matplotlib's Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.axvline(1.0, color="0.6", lw=0.8)
    for row in summary["rows"]:
        x, y, err = (_nan(v) for v in (row.get("ratios", {}).get("train_step"), row.get("delta_ap"),
                                       row.get("delta_ap_spread")))  # fmt: skip
        if row["kind"] != "method" or not (_finite(x) and _finite(y)):
            continue
        ax.errorbar([x], [y], yerr=[err] if _finite(err) else None, fmt="o", capsize=3, ms=5)
        ax.annotate(row["label"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.margins(x=0.2, y=0.15)  # room for the labels
    ax.set_xlabel("train-step ratio (solution / baseline)")
    ax.set_ylabel("ΔAP (AP points; bars: sqrt(s_m² + s_b²))")
    ax.set_title(f"{summary['name']}: seeds {', '.join(map(str, summary['seeds']))}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150)


# ------------------------------------------------------------------------------------------------
# The comparison


def _normalised(value):
    return [_normalised(v) for v in value] if isinstance(value, (list, tuple)) else value


class Comparison:
    """Trains, benchmarks and tabulates ``entries`` over ``seeds`` in ``output_dir``.

    Args:
        entries: the solutions (:class:`Entry`); rows are grouped by baseline.
        seeds: ``train.seed`` of each run.
        output_dir: run directories (``<config name>/seed<seed>``), ``benchmarks/`` and the outputs.
        name: the output files' stem and the table's title.
        overrides: ``key=value`` overrides of every training run (e.g. ``train.max_iter=200``).
        num_gpus: ``--num-gpus`` of every training run.
        jobs: training runs at once, each in its own lane (see "Lanes").
        gpu_ids: the GPUs the lanes share, as CUDA_VISIBLE_DEVICES names them; empty on CPU.
        train_net: path of train_net.py (default: the repository's).
        benchmark_settings: BenchmarkSettings keywords of every pair (image_size, batch, iters, warmup,
            device, amp, overrides), updated by each entry's ``benchmark``.
        describe: ``(config, overrides) -> ConfigInfo``; default :func:`describe_config` (detectron2).
        trainer: ``(TrainingJob) -> None``; default this module's ``train_in_subprocess`` (looked up
            at call time).
        benchmark: ``(method, baseline, settings) -> dict``; default ``run_benchmark_in_process``.
        clock: seconds, for durations and the ETA.
        log: where progress lines go (default: this module's logger).
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        seeds: Sequence[int],
        output_dir: str,
        *,
        name: str = "comparison",
        description: str = "",
        overrides: Sequence[str] = (),
        num_gpus: int = 1,
        jobs: int = 1,
        gpu_ids: Sequence[str] = (),
        train_net: Optional[str] = None,
        benchmark_settings: Optional[Mapping[str, Any]] = None,
        describe: Optional[Callable[[str, Sequence[str]], ConfigInfo]] = None,
        trainer: Optional[Callable[[TrainingJob], None]] = None,
        benchmark: Optional[Callable[[str, str, Mapping[str, Any]], Dict]] = None,
        clock: Callable[[], float] = time.monotonic,
        log: Optional[Callable[[str], None]] = None,
    ):
        if not entries:
            raise ValueError("A comparison needs at least one entry.")
        labels = [e.label for e in entries]
        if len(set(labels)) != len(labels):
            raise ValueError(f"Entry labels must be unique; {sorted({x for x in labels if labels.count(x) > 1})} repeat.")
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise ValueError(f"seeds={list(seeds)}: give distinct integers >= 0 (train.seed of each run).")
        if num_gpus < 1:
            raise ValueError(f"num_gpus={num_gpus} must be >= 1.")
        if jobs < 1:
            raise ValueError(f"jobs={jobs} must be >= 1 (the number of runs trained at once).")
        clash = [o for o in overrides if o.split("=", 1)[0].lstrip("+") in ("train.seed", "train.output_dir")]
        if clash:
            raise ValueError(f"{clash}: the comparison sets train.seed and train.output_dir of each run itself.")
        self.entries = tuple(entries)
        self.seeds = tuple(seeds)
        self.output_dir = Path(output_dir).absolute()
        self.name = name
        self.description = description
        self.overrides = tuple(overrides)
        self.num_gpus = num_gpus
        self.jobs = jobs
        self.lane_env = lane_environments(jobs, num_gpus, tuple(gpu_ids), os.cpu_count() or 1, os.environ)
        self.train_net = Path(train_net or Path(__file__).resolve().parents[2] / "train_net.py").absolute()
        self.benchmark_settings = dict(benchmark_settings or {})
        self._describe = describe or describe_config
        self._trainer = trainer
        self._benchmark = benchmark
        self.clock = clock
        self.log = log or logger.info
        self._infos: Optional[Dict[str, ConfigInfo]] = None

    # -- configs and runs ------------------------------------------------------------------------

    @property
    def configs(self) -> Tuple[str, ...]:
        """Every config once, each baseline before its first solution."""
        seen: Dict[str, None] = {}
        for e in self.entries:
            seen.setdefault(e.baseline)
            seen.setdefault(e.config)
        return tuple(seen)

    @property
    def infos(self) -> Dict[str, ConfigInfo]:
        """:class:`ConfigInfo` of every config, read once (so a broken config fails before training)."""
        if self._infos is None:
            self._infos = {c: self._describe(c, self.overrides) for c in self.configs}
        return self._infos

    def run_dir(self, config: str, seed: int) -> Path:
        return self.output_dir / config_slug(config) / f"seed{seed}"

    def runs(self) -> List[Run]:
        return [
            Run(config, seed, self.run_dir(config, seed), self.infos[config].max_iter)
            for config in self.configs
            for seed in self.seeds
        ]

    def _check_record(self, run: Run) -> None:
        path = run.output_dir / RUN_RECORD
        if not path.is_file():
            return
        record = json.loads(path.read_text())
        wanted = self._record(run)
        if record != wanted:
            raise ValueError(
                f"{run.output_dir} was trained as {record}, this comparison asks for {wanted}. Use another "
                "--output-dir for other settings, or delete that run directory to train it again."
            )

    def _record(self, run: Run) -> Dict:
        return {"config": run.config, "seed": run.seed, "overrides": list(self.overrides)}

    def plan(self) -> List[Tuple[Run, str]]:
        """(run, state) of every run; see :func:`run_state`. Raises ValueError for a run directory
        trained with other overrides."""
        plan = []
        for run in self.runs():
            self._check_record(run)
            plan.append((run, run_state(run)))
        return plan

    def job(self, run: Run, resume: bool, lane: int = 0) -> TrainingJob:
        command = [sys.executable, str(self.train_net), "--config-file", run.config, "--num-gpus", str(self.num_gpus)]
        if resume:
            command.append("--resume")
        command += [f"train.seed={run.seed}", f"train.output_dir={run.output_dir}", *self.overrides]
        return TrainingJob(run, resume, tuple(command), run.output_dir / TRAIN_LOG, self.train_net.parent,
                           self.lane_env[lane])  # fmt: skip

    def train(self) -> None:
        """Train every run that is not finished (interrupted ones with --resume), logging progress."""
        plan = self.plan()
        todo = [(run, state) for run, state in plan if state != "finished"]
        counts = {s: sum(1 for _, st in plan if st == s) for s in ("finished", "interrupted", "new")}
        self.log(
            f"{len(plan)} runs ({len(self.configs)} configs x {len(self.seeds)} seeds): {counts['finished']} "
            f"finished, {counts['interrupted']} to resume, {counts['new']} to train."
        )
        if not todo:
            return
        if not self.train_net.is_file():
            raise FileNotFoundError(f"{self.train_net} does not exist; pass train_net= (--train-net) the path of train_net.py.")
        trainer = self._trainer or train_in_subprocess  # the module's, at call time (tests monkeypatch it)
        progress = Progress(len(todo), self.clock, lanes=self.jobs)
        pending = list(enumerate(todo, 1))
        lock = threading.Lock()
        failures: List[BaseException] = []

        def lane(index: int) -> None:
            while True:
                with lock:
                    if failures or not pending:
                        return  # after a failure, lanes finish their current run and take no new one
                    k, (run, state) = pending.pop(0)
                    job = self.job(run, resume=state == "interrupted", lane=index)
                    self.log(
                        f"Run {k}/{len(todo)}: {run.config} seed {run.seed}{' (resuming)' if job.resume else ''} -> "
                        f"{run.output_dir}" + (f" (lane {index + 1}/{self.jobs})" if self.jobs > 1 else "")
                    )
                    run.output_dir.mkdir(parents=True, exist_ok=True)
                    (run.output_dir / RUN_RECORD).write_text(json.dumps(self._record(run), indent=1))
                    start = self.clock()
                try:
                    trainer(job)
                    if run_state(run) != "finished":
                        raise RuntimeError(
                            f"{run.config} (seed {run.seed}) ended without a bbox evaluation at iteration "
                            f"{run.max_iter} in {run.output_dir / 'metrics.json'}; the config needs "
                            f"dataloader.evaluator. Log: {job.log_file}"
                        )
                except BaseException as e:  # noqa: B036  (re-raised by train() once the other lanes stop)
                    with lock:
                        failures.append(e)
                    return
                with lock:
                    self.log(progress.record(f"{run.config} seed {run.seed}", self.clock() - start))

        if self.jobs == 1:
            lane(0)
        else:
            threads = [threading.Thread(target=lane, args=(i,), name=f"comparison-lane-{i}") for i in range(self.jobs)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]

    # -- benchmarks ------------------------------------------------------------------------------

    def entry_benchmark_settings(self, entry: Entry) -> Dict[str, Any]:
        """The comparison's benchmark settings updated by the entry's; its overrides added."""
        settings = dict(self.benchmark_settings)
        extra = dict(entry.benchmark)
        overrides = list(settings.get("overrides", ())) + list(extra.pop("overrides", ()))
        settings.update(extra)
        if any("{image_size}" in o for o in overrides):
            if "image_size" not in settings:
                raise ValueError(f"{entry.label}: its benchmark overrides use {{image_size}}; set image_size.")
            overrides = [o.replace("{image_size}", str(settings["image_size"])) for o in overrides]
        settings["overrides"] = overrides
        return settings

    def benchmark_path(self, entry: Entry) -> Path:
        slug = f"{config_slug(entry.config)}__vs__{config_slug(entry.baseline)}".replace("/", ".")
        return self.output_dir / "benchmarks" / f"{slug}.json"

    def benchmark(self, entry: Entry) -> Dict:
        """The entry's benchmark result: cached JSON if measured with the same settings and configs,
        else measured now and cached."""
        path, settings = self.benchmark_path(entry), self.entry_benchmark_settings(entry)
        if path.is_file():
            cached = json.loads(path.read_text())
            same = cached.get("configs") == {"baseline": entry.baseline, "method": entry.config} and all(
                _normalised(cached.get("settings", {}).get(k)) == _normalised(v) for k, v in settings.items()
            )
            if same:
                return cached
            self.log(f"{path} was measured with other settings or configs; measuring again.")
        self.log(f"Benchmark: {entry.label} ({entry.config}) vs {entry.baseline}.")
        benchmark = self._benchmark or run_benchmark_in_process
        result = benchmark(entry.config, entry.baseline, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_json_safe(result), indent=1))
        os.replace(tmp, path)  # a kill never leaves half a file that would count as cached
        return json.loads(path.read_text())

    # -- results ---------------------------------------------------------------------------------

    def _config_row(self, config: str) -> Dict:
        info = self.infos[config]
        runs = []
        for seed in self.seeds:
            output_dir = self.run_dir(config, seed)
            metrics = final_metrics(str(output_dir))
            runs.append({"seed": seed, "output_dir": str(output_dir), "iteration": metrics["iteration"],
                         "ap": metrics["ap"], "sec_per_iter": metrics["sec_per_iter"]})  # fmt: skip
        return {
            "config": config,
            "model_class": info.model_class,
            "model_parts": dict(info.parts),
            "max_iter": info.max_iter,
            "runs": runs,
            "ap_mean": {k: _mean([r["ap"][k] for r in runs]) for k in runs[0]["ap"]},
            "ap_std": {k: sample_std([r["ap"][k] for r in runs]) for k in runs[0]["ap"]},
            "hyperparameters": [
                {"name": h.name, "default": h.default, "value": value, "meaning": h.meaning}
                for h, value in info.hyperparameters
            ],
            "num_hyperparameters": len(info.hyperparameters),
        }

    def summary(self, benchmarks: Mapping[str, Dict]) -> Dict:
        """Every number of the comparison (the JSON written): one row per baseline, followed by its
        solutions. ``benchmarks``: entry label -> benchmark result."""
        rows = []
        baselines: Dict[str, List[Entry]] = {}
        for entry in self.entries:
            baselines.setdefault(entry.baseline, []).append(entry)
        for baseline, entries in baselines.items():
            base = self._config_row(baseline)
            rows.append({"kind": "baseline", "label": entries[0].baseline_name, "detector": entries[0].detector_name,
                         **base})  # fmt: skip
            base_ap = [r["ap"]["AP"] for r in base["runs"]]
            for entry in entries:
                row = self._config_row(entry.config)
                delta = delta_ap([r["ap"]["AP"] for r in row["runs"]], base_ap)
                result = benchmarks[entry.label]
                rows.append({
                    "kind": "method", "label": entry.label, "detector": entry.detector_name, **row,
                    "baseline": baseline, "baseline_label": entry.baseline_name,
                    "delta_ap": delta["delta"], "delta_ap_spread": delta["spread"], "delta_ap_stderr": delta["stderr"],
                    "ratios": {name: result["ratio"][key] for name, key in RATIO_KEYS.items()},
                    "benchmark_file": str(self.benchmark_path(entry)), "benchmark": result,
                })  # fmt: skip
        return _json_safe({
            "name": self.name, "description": self.description, "seeds": list(self.seeds),
            "overrides": list(self.overrides), "num_gpus": self.num_gpus,
            "delta_ap_spread": SPREAD_FORMULA, "delta_ap_stderr": STDERR_FORMULA,
            "benchmark_settings": self.benchmark_settings, "rows": rows,
        })  # fmt: skip

    def write(self, summary: Mapping) -> Dict[str, Path]:
        """Write ``<name>.md``, ``<name>.json`` and ``<name>.png``; returns their paths."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        paths = {ext: self.output_dir / f"{self.name}.{ext}" for ext in ("md", "json", "png")}
        title = f"# {self.name}" + (f": {self.description}" if self.description else "")
        paths["md"].write_text(f"{title}\n\n{markdown_table(summary)}")
        paths["json"].write_text(json.dumps(summary, indent=1))
        plot_delta_ap(summary, str(paths["png"]))
        return paths

    def run(self) -> Dict[str, Path]:
        """Read the configs, train what is missing, benchmark, write the outputs."""
        self.infos  # noqa: B018  (fail on a broken config or a missing declaration before training)
        self.train()
        benchmarks = {e.label: self.benchmark(e) for e in self.entries}
        paths = self.write(self.summary(benchmarks))
        self.log(f"Wrote {', '.join(str(p) for p in paths.values())}.")
        return paths
