"""The training and evaluation loop behind ``train_net.py``, shared by every project.

detectron2's LazyConfig loop (tools/lazyconfig_train_net.py) plus what our users asked for: config
names resolved from the installed configs, overrides checked against the config, CPU fallback that
says so (with a thread count that survives a busy machine), dataset validation and a num_classes
check before training, a plain-words checkpoint report (and no evaluation of a model the checkpoint
does not determine), checkpoints that a kill cannot corrupt, resumption that continues the data
stream, a learning-rate scaling warning, AMP only where it works, optional gradient clipping
(``train.grad_clip``), and evaluation results written next to the checkpoints.
"""
import json
import logging
import os
import time

import torch

from ._compat import require_detectron2

require_detectron2("train_net / d2imbalance.engine")
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import (  # noqa: E402
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.engine.defaults import create_ddp_model  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader  # noqa: E402
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402
from detectron2.utils.registry import locate  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

from .checkpoint import ReportingCheckpointer  # noqa: E402
from .data.datasets import dataset_names, prepare_datasets, register_coco_datasets  # noqa: E402
from .data.validation import validate_coco_json  # noqa: E402
from .data.voc_validation import validate_voc  # noqa: E402
from .gradient_clipping import GradientClipping  # noqa: E402
from .lr_scaling import lr_scaling_warning  # noqa: E402
from .model_zoo import get_config_file  # noqa: E402
from .overrides import apply_overrides  # noqa: E402
from .resume import RunRecord, build_resumable_train_loader, data_stream_start, max_iter_change  # noqa: E402
from .threads import ThreadTuner, available_cores, choose_cpu_threads, thread_candidates  # noqa: E402

logger = logging.getLogger("d2imbalance")

__all__ = ["default_argument_parser", "launch_from_args", "main", "setup", "do_train", "do_test"]


def setup(args):
    """Load the config (path or model-zoo-style name), check and apply overrides, pick the device
    (and the CPU thread count), set up logging / seeding / the saved config (detectron2's
    default_setup), and check the lr scaling."""
    args.config_file = get_config_file(args.config_file)  # default_setup re-reads it to log it
    cfg = LazyConfig.load(args.config_file)
    reference = cfg.train.get("lr_reference") or dict(
        lr=cfg.optimizer.lr, total_batch_size=cfg.dataloader.train.total_batch_size
    )
    cfg = apply_overrides(cfg, args.opts)
    cpu_fallback = str(cfg.train.device).startswith("cuda") and not torch.cuda.is_available()
    if cpu_fallback:
        cfg.train.device = "cpu"
    default_setup(cfg, args)  # logger, environment info, config.yaml in output_dir, seed
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="d2imbalance")
    if cpu_fallback:
        logger.warning("No GPU found: running on CPU (train.device=cpu). Expect it to be slow.")
    if cfg.train.amp.enabled and cfg.train.device == "cpu":
        logger.warning("train.amp.enabled=True needs a GPU; training in float32 on CPU instead.")
        cfg.train.amp.enabled = False
    if cfg.train.device == "cpu":
        loader = cfg.dataloader.test if args.eval_only else cfg.dataloader.train
        threads, why = choose_cpu_threads(
            os.environ, available_cores(), loader.get("num_workers", 0), comm.get_local_size()
        )
        torch.set_num_threads(threads)
        candidates = [] if args.eval_only else training_thread_candidates(cfg)
        timing = f"; training times {' and '.join(map(str, candidates))} threads and keeps the faster" if len(
            candidates
        ) > 1 else ""
        logger.info(f"CPU: {threads} torch thread(s) per process ({why}){timing}.")
    warning = lr_scaling_warning(
        cfg.optimizer.lr,
        cfg.dataloader.train.total_batch_size,
        reference["lr"],
        reference["total_batch_size"],
    )
    if warning:
        logger.warning(warning)
    register_coco_datasets(cfg.train.get("datasets", []))
    return cfg


def validate_datasets(cfg) -> None:
    """Validate every COCO-format or Pascal VOC (XML) dataset of ``dataloader.train`` and
    ``dataloader.test`` before the first iteration (a broken test set would otherwise fail after
    training); log problems, stop on fatal ones. ``train.validate_decode_images=True`` also decodes
    every image."""
    decode = cfg.train.get("validate_decode_images", False)
    for split in ("train", "test"):
        dataset_cfg = cfg.dataloader[split].dataset
        # get_detection_dataset_dicts' default is filter_empty=True.
        policy = "drop" if dataset_cfg.get("filter_empty", True) else "keep"
        for name in dataset_names(dataset_cfg.names):
            label = f"{name} in dataloader.{split}"
            metadata = MetadataCatalog.get(name)
            json_file = metadata.get("json_file")
            if json_file:
                report = validate_coco_json(
                    json_file, metadata.get("image_root"), dataset=label, empty_images=policy,
                    decode_images=decode, evaluated=split == "test",
                )
            elif metadata.get("dirname") and metadata.get("split"):  # detectron2's register_pascal_voc
                report = validate_voc(
                    metadata.dirname, metadata.split, metadata.thing_classes, dataset=label,
                    empty_images=policy, decode_images=decode, evaluated=split == "test",
                )
            else:
                logger.info(f"Dataset {label} has no json_file in its metadata; not a COCO file, not validated.")
                continue
            serious = any(p.severity != "info" for p in report.problems)
            (logger.warning if serious else logger.info)(report.summary())
            report.raise_if_fatal()


def prepare_all_datasets(cfg) -> None:
    """Generate on-demand datasets (shapes) once, on the main process, before other ranks read them."""
    names = dataset_names(cfg.dataloader.train.dataset.names) + dataset_names(cfg.dataloader.test.dataset.names)
    if comm.is_main_process():
        prepare_datasets(names)
    comm.synchronize()


def model_num_classes(model):
    """(num_classes, the config key that sets it) of this repo's meta-architectures: the ROI heads'
    for two-stage models, the model's own for RetinaNet-like ones; (None, None) for others."""
    if hasattr(model, "roi_heads"):
        return model.roi_heads.num_classes, "model.roi_heads.num_classes"
    if hasattr(model, "num_classes"):
        return model.num_classes, "model.num_classes"
    return None, None


def check_num_classes(model, names) -> None:
    """Stop when the model predicts another number of classes than a dataset has categories.

    More categories would train as background (or crash later in the loss or the evaluator); fewer
    leave outputs nothing trains. Datasets whose metadata lacks ``thing_classes`` are loaded to get
    them (detectron2's COCO loader sets them), and skipped if they still have none.

    Raises:
        ValueError: naming both numbers, the dataset and the override to pass.
    """
    num_classes, key = model_num_classes(model.module if isinstance(model, DistributedDataParallel) else model)
    if num_classes is None:
        return
    for name in names:
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None:
            DatasetCatalog.get(name)
            classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"The model predicts {key}={num_classes} classes but dataset {name!r} has {len(classes)} "
                f"categories ({', '.join(map(str, classes[:8]))}{' ...' if len(classes) > 8 else ''}). "
                f"Pass {key}={len(classes)}."
            )


def build_train_loader(cfg, run: RunRecord, start_iter: int):
    """The training loader, continuing the data stream of a resumed run where it stopped.

    detectron2's ``build_detection_train_loader`` (every config of this repo) is replaced by
    :func:`d2imbalance.resume.build_resumable_train_loader` with the same arguments, the
    checkpoint's data seed and the batches already trained skipped; ``run.current`` is filled for
    the next checkpoints. A loader of another kind is built as configured and restarts its stream.
    """
    loader_cfg = cfg.dataloader.train
    run.current = dict(max_iter=cfg.train.max_iter)
    target = loader_cfg._target_
    if (locate(target) if isinstance(target, str) else target) is build_detection_train_loader:
        kwargs = {k: instantiate(loader_cfg[k]) for k in loader_cfg.keys() if k != "_target_"}
        if isinstance(kwargs["dataset"], list):
            return _build_resumable(run, start_iter, kwargs)
        loader = build_detection_train_loader(**kwargs)
    else:
        loader = instantiate(loader_cfg)
    if start_iter:
        logger.warning(
            "dataloader.train is not detectron2's build_detection_train_loader over a list of dataset "
            "dicts: its data order restarts from the beginning on --resume."
        )
    return loader


def _build_resumable(run: RunRecord, start_iter: int, kwargs: dict):
    saved = run.saved if start_iter else None
    seed = (saved or {}).get("data_seed")
    run.current.update(
        data_seed=comm.shared_random_seed() if seed is None else seed,
        dataset_size=len(kwargs["dataset"]),
        total_batch_size=kwargs["total_batch_size"],
        world_size=comm.get_world_size(),
    )
    skip, warning = data_stream_start(saved, run.current, start_iter)
    if warning:
        logger.warning(warning)
    elif skip:
        logger.info(f"Continuing the data stream after its first {skip} batches (seed {run.current['data_seed']}).")
    if "sampler" in kwargs and skip:
        logger.warning("dataloader.train.sampler is set: the data order continues only if its seed is fixed.")
    return build_resumable_train_loader(**kwargs, data_seed=run.current["data_seed"], skip_batches=skip)


def build_evaluator(cfg):
    """``dataloader.evaluator`` may be one evaluator or a list of them."""
    evaluators = instantiate(cfg.dataloader.evaluator)
    return DatasetEvaluators(list(evaluators)) if isinstance(evaluators, (list, tuple)) else evaluators


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    loader = instantiate(cfg.dataloader.test)
    check_num_classes(model, dataset_names(cfg.dataloader.test.dataset.names))
    results = inference_on_dataset(model, loader, build_evaluator(cfg))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def wrap_ddp(model, device: str, ddp_cfg):
    """detectron2's create_ddp_model, which also works for CPU (gloo) processes: DDP must not be
    given device_ids for a CPU module."""
    kwargs = dict(ddp_cfg)
    if device == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


class CPUThreadTuning(hooks.HookBase):
    """Sets torch's thread count from a :class:`ThreadTuner` timing the training steps (CPU runs)."""

    def __init__(self, tuner: ThreadTuner):
        self.tuner = tuner
        self._start = 0.0

    def before_train(self):
        torch.set_num_threads(self.tuner.threads)

    def before_step(self):
        self._start = time.perf_counter()

    def after_step(self):
        threads = self.tuner.record(time.perf_counter() - self._start)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        if self.tuner.decided:
            logger.info(f"CPU threads: {self.tuner.summary()}.")
        self.trainer.storage.put_scalar("cpu/torch_threads", threads, smoothing_hint=False)


def training_thread_candidates(cfg) -> list:
    """The torch thread counts a CPU training run may time (:func:`~.threads.thread_candidates`)."""
    return thread_candidates(
        os.environ, available_cores(), cfg.dataloader.train.get("num_workers", 0), comm.get_local_size()
    )


def cpu_thread_tuning(cfg):
    """The thread-timing hook of a CPU run, or None (GPU, OMP_NUM_THREADS set, one candidate)."""
    if cfg.train.device != "cpu":
        return None
    candidates = training_thread_candidates(cfg)
    return CPUThreadTuning(ThreadTuner(candidates)) if len(candidates) > 1 else None


def gradient_clipping(cfg):
    """The gradient-clipping hook that ``train.grad_clip`` asks for, or None (disabled or not in the config)."""
    settings = cfg.train.get("grad_clip")
    if not settings or not settings.enabled:
        return None
    hook = GradientClipping(settings.max_norm, settings.get("norm_type", 2.0))
    logger.info(
        f"train.grad_clip: the gradients' global {hook.norm_type:g}-norm is clipped to {hook.max_norm:g} "
        "before each step and logged as grad_norm."
    )
    return hook


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)

    model = wrap_ddp(model, cfg.train.device, cfg.train.ddp)
    # The loader is built after the checkpoint is loaded: a resumed run continues its data stream.
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, None, optimizer)
    run = RunRecord()
    checkpointer = ReportingCheckpointer(model, cfg.train.output_dir, trainer=trainer, run=run)
    lr_multiplier = instantiate(cfg.lr_multiplier)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            cpu_thread_tuning(cfg),  # before the eval and checkpoint hooks: it times the step alone
            hooks.LRScheduler(scheduler=lr_multiplier),
            gradient_clipping(cfg),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period
            )
            if comm.is_main_process()
            else None,
        ]
    )
    if args.resume and not checkpointer.has_checkpoint():
        logger.warning(
            f"--resume given but {cfg.train.output_dir} has no checkpoint: starting from "
            f"train.init_checkpoint={cfg.train.init_checkpoint!r}."
        )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if checkpointer.resumed_from else 0
    if start_iter:
        logger.info(f"Resuming from {checkpointer.resumed_from} at iteration {start_iter}.")
    trainer.reset_data_loader(lambda: build_train_loader(cfg, run, start_iter))
    if run.saved:
        warning = max_iter_change(run.saved["max_iter"], cfg.train.max_iter, start_iter, lr_multiplier)
        if warning:
            logger.warning(warning)
    check_num_classes(
        model,
        dataset_names(cfg.dataloader.train.dataset.names) + dataset_names(cfg.dataloader.test.dataset.names),
    )
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval_only(args, cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = wrap_ddp(model, cfg.train.device, cfg.train.ddp)
    checkpointer = ReportingCheckpointer(model, cfg.train.output_dir)
    if not cfg.train.init_checkpoint and not (args.resume and checkpointer.has_checkpoint()):
        logger.warning(
            "--eval-only without weights: evaluating a freshly initialised model. Pass "
            "train.init_checkpoint=<path or URL>, or --resume to use the last checkpoint in train.output_dir."
        )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if checkpointer.last_report is not None:
        checkpointer.last_report.check_for_evaluation()
    results = do_test(cfg, model)
    if comm.is_main_process():
        path = os.path.join(cfg.train.output_dir, "eval_results.json")
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        logger.info(f"Evaluation results written to {path}")
    return results


def main(args):
    cfg = setup(args)
    prepare_all_datasets(cfg)
    if args.eval_only:
        return do_eval_only(args, cfg)
    if cfg.train.get("validate_datasets", True):
        validate_datasets(cfg)
    do_train(args, cfg)


def launch_from_args(args):
    """Run :func:`main` in ``args.num_gpus`` processes per machine (CPU processes with gloo when
    no GPU is present) through detectron2's launch."""
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
