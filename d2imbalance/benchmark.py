"""Speed and memory of a method against its baseline, measured in one run on identical inputs.

Both models are built from their configs; training steps are warmed up and timed first, then inference,
each phase interleaved (the order alternates every iteration) so that machine noise hits both alike.
Inference is timed in its own phase so that its time does not depend on what the allocator and caches
were left with by the backward pass just before it. Reported: median training step (forward +
backward + optimizer step), median inference time per image, peak memory (max allocated on GPU;
on CPU the growth of peak RSS while training, the median of three fresh child processes per model,
so one model's freed memory cannot hide in the other's number), and the method / baseline ratios.
Each step pair and each memory measurement logs a progress line with the time elapsed and the ETA of
its phase (logger ``d2imbalance.benchmark``): at COCO size on a CPU the whole run takes half an hour.
"""
import json
import logging
import multiprocessing
import os
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ._compat import require_detectron2

require_detectron2("d2imbalance.benchmark")
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from .model_zoo import get_config  # noqa: E402
from .progress import Progress  # noqa: E402

logger = logging.getLogger("d2imbalance.benchmark")
#: Training steps measured for peak memory (after one that builds the lazy buffers), then one inference.
MEMORY_TRAIN_STEPS = 3


@dataclass
class BenchmarkSettings:
    image_size: int = 320
    batch: int = 2
    iters: int = 20
    warmup: int = 3
    device: str = "cpu"
    amp: bool = False
    boxes_per_image: int = 8
    seed: int = 0
    #: "key=value" config overrides applied to both configs, e.g. "model.multiscale=null".
    overrides: Tuple[str, ...] = ()

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def __post_init__(self):
        if self.on_gpu and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but no GPU is available; pass --device cpu.")
        if min(self.image_size, self.batch, self.iters, self.boxes_per_image) < 1 or self.warmup < 0:
            raise ValueError(
                f"image_size={self.image_size}, batch={self.batch}, iters={self.iters} and "
                f"boxes_per_image={self.boxes_per_image} must be >= 1, warmup={self.warmup} >= 0."
            )


def _num_classes(model) -> int:
    if hasattr(model, "num_classes"):
        return model.num_classes
    return model.roi_heads.num_classes


def synthetic_batch(settings: BenchmarkSettings, num_classes: int) -> List[dict]:
    """The same random images and boxes for every model (seeded)."""
    g = torch.Generator().manual_seed(settings.seed)
    size = settings.image_size
    batch = []
    for _ in range(settings.batch):
        xy = torch.rand(settings.boxes_per_image, 2, generator=g) * size * 0.7
        wh = 8 + torch.rand(settings.boxes_per_image, 2, generator=g) * size * 0.3
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.cat([xy, (xy + wh).clamp(max=size)], dim=1))
        instances.gt_classes = torch.randint(num_classes, (settings.boxes_per_image,), generator=g)
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8).float()
        batch.append({"image": image, "instances": instances, "height": size, "width": size})
    return batch


def _zero_proposal_deltas(model) -> None:
    """Make a two-stage model's proposals its anchors (ranked by objectness, then NMS).

    The RPN of a randomly initialised model predicts huge box deltas: its boxes collapse at the image
    border and a handful of proposals per image survive, so the ROI heads, where two-stage methods differ,
    would be timed on about ten RoIs per image. With zero deltas (weights and bias; the lr is 0, so they
    stay zero) each image gets its ``post_nms_topk`` proposals (1000 in the R50-FPN configs), as in real
    training. Models without an RPN are left alone.
    """
    head = getattr(getattr(model, "proposal_generator", None), "rpn_head", None)
    deltas = getattr(head, "anchor_deltas", None)
    if deltas is not None:
        with torch.no_grad():
            deltas.weight.zero_()
            deltas.bias.zero_()


class _Runner:
    """One model with its optimizer and inputs; times one training step or one inference batch."""

    def __init__(self, config: str, settings: BenchmarkSettings):
        torch.manual_seed(settings.seed)
        self.settings = settings
        cfg = LazyConfig.apply_overrides(get_config(config), list(settings.overrides))
        self.model = instantiate(cfg.model).to(settings.device)
        _zero_proposal_deltas(self.model)
        self.inputs = synthetic_batch(settings, _num_classes(self.model))
        # lr 0: the step does all of SGD's arithmetic but leaves the weights alone. Randomly initialised
        # R50 models (FrozenBN, no ImageNet weights offline) have losses in the thousands and would
        # diverge within a few steps at any lr; this way every timed step sees the same model.
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0, momentum=0.9)
        device_type = "cuda" if settings.on_gpu else "cpu"
        dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        self._autocast = (lambda: torch.autocast(device_type, dtype=dtype)) if settings.amp else nullcontext

    def _sync(self):
        if self.settings.on_gpu:
            torch.cuda.synchronize()

    def train_step(self) -> float:
        self.model.train()
        self._sync()
        start = time.perf_counter()
        with self._autocast():
            losses = self.model(self.inputs)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self._sync()
        return time.perf_counter() - start

    @torch.no_grad()
    def inference_per_image(self) -> float:
        self.model.eval()
        self._sync()
        start = time.perf_counter()
        with self._autocast():
            self.model(self.inputs)
        self._sync()
        return (time.perf_counter() - start) / self.settings.batch


def _peak_memory_mib(config: str, settings: BenchmarkSettings, steps: int = MEMORY_TRAIN_STEPS) -> float:
    """Peak memory of a few training steps plus one inference, in MiB (see module docstring)."""
    with EventStorage():
        if settings.on_gpu:
            runner = _Runner(config, settings)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            for _ in range(steps):
                runner.train_step()
            runner.inference_per_image()
            return torch.cuda.max_memory_allocated() / 2**20
        runner = _Runner(config, settings)
        runner.train_step()  # first step allocates lazily-built buffers (anchors, grads)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS counter (VmHWM) to the current RSS
        rss_before = _proc_status_kib("VmRSS")
        for _ in range(steps):
            runner.train_step()
        runner.inference_per_image()
        return (_proc_status_kib("VmHWM") - rss_before) / 1024


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status (peak RSS needs Linux).")


# glibc serves allocations above this size with mmap and returns them to the OS when freed, so RSS
# follows the live tensors instead of keeping freed heap pages (which made repeated CPU measurements
# of one model differ by up to 16%).
_CHILD_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
CPU_MEMORY_REPEATS = 3


#: Called after each peak-memory measurement with (peak MiB, seconds it took).
OnMeasured = Callable[[float, float], None]


def _peak_memory_in_child(config: str, settings: BenchmarkSettings, on_measured: OnMeasured) -> float:
    """Median over fresh spawned processes of :func:`_peak_memory_mib` (CPU)."""
    saved = {key: os.environ.get(key) for key in _CHILD_MALLOC_ENV}
    os.environ.update(_CHILD_MALLOC_ENV)  # read by glibc when the child starts
    try:
        context = multiprocessing.get_context("spawn")
        peaks = []
        for _ in range(CPU_MEMORY_REPEATS):
            start = time.perf_counter()
            with context.Pool(1) as pool:
                peak = pool.apply(_peak_memory_mib, (config, settings))
            peaks.append(peak)
            on_measured(peak, time.perf_counter() - start)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return statistics.median(peaks)


def _measure_peak_memory(config: str, settings: BenchmarkSettings, on_measured: OnMeasured) -> float:
    """Peak memory in MiB: in this process on a GPU, in fresh child processes on the CPU."""
    if not settings.on_gpu:
        return _peak_memory_in_child(config, settings, on_measured)
    start = time.perf_counter()
    peak = _peak_memory_mib(config, settings)
    on_measured(peak, time.perf_counter() - start)
    return peak


def run_benchmark(
    method: str,
    baseline: str,
    settings: BenchmarkSettings,
    log: Optional[Callable[[str], None]] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Dict:
    """Measure both configs; returns a dict with per-model medians and method / baseline ratios.

    ``log`` receives the progress lines (default: this module's logger); ``clock`` times the elapsed
    part of them.
    """
    log = log or logger.info
    steps_per_phase = settings.warmup + settings.iters
    log(
        f"Timing {settings.warmup} warm-up + {settings.iters} timed training steps of each model (the two "
        f"alternate), then as many inference batches, then peak memory: {method} vs {baseline}."
    )
    times: Dict[str, Dict[str, list]] = {name: {"train": [], "infer": []} for name in ("baseline", "method")}
    with EventStorage():
        runners = {"baseline": _Runner(baseline, settings), "method": _Runner(method, settings)}
        for phase, label, step, per_call in (
            ("train", "training-step pairs", _Runner.train_step, 1),
            ("infer", "inference-batch pairs", _Runner.inference_per_image, settings.batch),  # s per image
        ):
            progress = Progress(steps_per_phase, clock, done=f"{label} done", item="pair")
            for i in range(steps_per_phase):
                warm = i < settings.warmup
                k = i - settings.warmup  # the order alternates on the timed iterations
                order = ("baseline", "method") if warm or k % 2 == 0 else ("method", "baseline")
                seconds = {name: step(runners[name]) for name in order}
                if not warm:
                    for name in order:
                        times[name][phase].append(seconds[name])
                what = "warm-up" if warm else "timed"
                what += "".join(f", {name} {1000 * seconds[name] * per_call:.0f} ms" for name in order)
                log(progress.record(what, sum(seconds.values()) * per_call))
    del runners
    repeats = 1 if settings.on_gpu else CPU_MEMORY_REPEATS
    log(
        f"Peak memory of {MEMORY_TRAIN_STEPS} training steps and one inference, "
        + ("in this process." if repeats == 1 else f"in {repeats} fresh processes per model (the median counts).")
    )
    memory_progress = Progress(2 * repeats, clock, done="peak-memory measurements", item="measurement")
    result = {"settings": asdict(settings), "configs": {"baseline": baseline, "method": method}}
    for name, config in (("baseline", baseline), ("method", method)):

        def on_measured(peak_mib: float, seconds: float, name: str = name) -> None:
            log(memory_progress.record(f"{name} {peak_mib:.0f} MiB", seconds))

        result[name] = {
            "train_step_ms": 1000 * statistics.median(times[name]["train"]),
            "inference_ms_per_image": 1000 * statistics.median(times[name]["infer"]),
            "peak_memory_mib": _measure_peak_memory(config, settings, on_measured),
        }
    result["ratio"] = {
        key: result["method"][key] / result["baseline"][key] if result["baseline"][key] > 0 else float("nan")
        for key in result["baseline"]
    }
    return result


def format_table(result: Dict) -> str:
    rows = [
        ("train step (ms, median)", "train_step_ms"),
        ("inference (ms/image, median)", "inference_ms_per_image"),
        ("peak memory (MiB)", "peak_memory_mib"),
    ]
    s = result["settings"]
    lines = [
        f"method:   {result['configs']['method']}",
        f"baseline: {result['configs']['baseline']}",
        f"{s['image_size']}x{s['image_size']}, batch {s['batch']}, {s['boxes_per_image']} boxes per image, "
        f"{s['iters']} timed iterations after {s['warmup']} warm-up, device {s['device']}, amp {s['amp']}"
        + (f", overrides {' '.join(s['overrides'])}" if s["overrides"] else ""),
        f"| {'':30} | {'baseline':>10} | {'method':>10} | {'ratio':>7} |",
        f"|{'-' * 32}|{'-' * 12}|{'-' * 12}|{'-' * 9}|",
    ]
    for label, key in rows:
        lines.append(
            f"| {label:30} | {result['baseline'][key]:10.1f} | {result['method'][key]:10.1f} | "
            f"{result['ratio'][key]:7.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> Dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, help="config path or name of the method")
    parser.add_argument("--baseline", required=True, help="config path or name of its baseline")
    defaults = BenchmarkSettings()
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--iters", type=int, default=defaults.iters)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument(
        "--boxes-per-image", type=int, default=defaults.boxes_per_image,
        help="ground-truth boxes in each synthetic image (e.g. 1000 to check the memory of crowded images)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (fp16 on GPU, bf16 on CPU)")
    parser.add_argument("--json", help="also write the result as JSON to this file")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides for both models, e.g. model.multiscale=null model.input_size=320 "
        "(YOLOv3 at 320; Hydra syntax, null is None)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s benchmark] %(message)s", datefmt="%m/%d %H:%M:%S")
    settings = BenchmarkSettings(
        image_size=args.image_size, batch=args.batch, iters=args.iters, warmup=args.warmup,
        boxes_per_image=args.boxes_per_image, device=args.device, amp=args.amp, overrides=tuple(args.overrides),
    )
    result = run_benchmark(args.method, args.baseline, settings)
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result
