"""Resuming continues the data stream where it stopped and names a changed max_iter."""
import logging

import pytest
import torch

pytestmark = pytest.mark.detectron2

# 10 images: ids 0-9; the even ones are landscape (group 0), the odd ones portrait (group 1).
DICTS = [dict(id=i, width=300 if i % 2 == 0 else 200, height=200 if i % 2 == 0 else 300) for i in range(10)]


def _batches(n, **kwargs):
    from d2imbalance.resume import build_resumable_train_loader

    kwargs = dict(dict(mapper=lambda d: d["id"], total_batch_size=3, data_seed=5), **kwargs)
    loader = build_resumable_train_loader(DICTS, **kwargs)
    return [batch for batch, _ in zip(loader, range(n))]


def _stream(seed, size, n):
    """TrainingSampler's stream: one torch.randperm per epoch from a generator seeded once."""
    g = torch.Generator()
    g.manual_seed(seed)
    out = []
    while len(out) < n:
        out += torch.randperm(size, generator=g).tolist()
    return out[:n]


def test_batches_without_grouping_are_consecutive_pieces_of_the_seeded_stream():
    stream = _stream(5, 10, 36)
    assert _batches(12, aspect_ratio_grouping=False) == [stream[3 * k: 3 * k + 3] for k in range(12)]


def test_batches_with_grouping_hold_one_aspect_ratio_each_and_keep_the_stream_order():
    """Each id joins the bucket of its parity; a bucket is yielded when it reaches 3 ids."""
    stream = _stream(5, 10, 200)
    expected, buckets = [], {0: [], 1: []}
    for i in stream:
        buckets[i % 2].append(i)
        if len(buckets[i % 2]) == 3:
            expected.append(buckets[i % 2])
            buckets[i % 2] = []
    assert _batches(12) == expected[:12]
    assert all(len({i % 2 for i in batch}) == 1 for batch in expected[:12])


@pytest.mark.parametrize("grouping", [True, False])
def test_a_resumed_stream_equals_the_uninterrupted_one_from_where_it_stopped(grouping):
    uninterrupted = _batches(12, aspect_ratio_grouping=grouping)
    resumed = _batches(7, aspect_ratio_grouping=grouping, skip_batches=5)
    assert resumed == uninterrupted[5:12]
    assert resumed[:2] != uninterrupted[:2]  # not the restart detectron2's loader does


def test_workers_deliver_the_same_batches_in_the_same_order():
    from detectron2.data.build import worker_init_reset_seed

    from d2imbalance.resume import build_resumable_train_loader

    assert _batches(6, num_workers=2) == _batches(6)
    loader = build_resumable_train_loader(DICTS, mapper=None, total_batch_size=3, num_workers=2)
    assert loader.num_workers == 2 and loader.worker_init_fn is worker_init_reset_seed  # as detectron2


def test_square_images_group_with_portrait_ones_and_a_finite_sampler_drops_its_last_partial_batch():
    """detectron2's rule: group 0 if width > height, else 1. Unshuffled ids 0 (square), 1 (portrait),
    2, 3 (landscape) in batches of 2: [0, 1], [2, 3]. Without grouping, 10 ids in batches of 3 from
    a finite sampler: [9] is dropped."""
    from torch.utils.data import SequentialSampler

    from d2imbalance.resume import build_resumable_train_loader

    dicts = [dict(id=0, width=5, height=5), dict(id=1, width=4, height=5), dict(id=2, width=5, height=4),
             dict(id=3, width=5, height=4)]
    loader = build_resumable_train_loader(dicts, mapper=lambda d: d["id"], total_batch_size=2,
                                          sampler=SequentialSampler(range(4)))
    assert list(loader) == [[0, 1], [2, 3]]
    finite = _batches(5, aspect_ratio_grouping=False, sampler=SequentialSampler(range(10)))
    assert finite == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_other_seeds_samplers_collate_functions_and_dataloader_arguments_reach_the_loader():
    from detectron2.data.samplers import TrainingSampler

    from d2imbalance.resume import build_resumable_train_loader

    assert _batches(4, data_seed=6) != _batches(4)
    with_sampler = _batches(4, aspect_ratio_grouping=False, sampler=TrainingSampler(10, shuffle=False), data_seed=5)
    assert with_sampler == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]]
    assert _batches(2, collate_fn=lambda batch: sum(batch), aspect_ratio_grouping=False) == [
        sum(_stream(5, 10, 3)), sum(_stream(5, 10, 6)[3:])]
    assert build_resumable_train_loader(DICTS, mapper=None, total_batch_size=3, timeout=7).timeout == 7
    assert build_resumable_train_loader(DICTS, mapper=None, total_batch_size=3).num_workers == 0  # as detectron2
    assert next(iter(build_resumable_train_loader(DICTS, mapper=None, total_batch_size=1, data_seed=5)))[0] == \
        DICTS[_stream(5, 10, 1)[0]]
    with pytest.raises(ValueError, match="total_batch_size=0 must be a positive multiple"):
        build_resumable_train_loader(DICTS, mapper=None, total_batch_size=0)


def test_the_stream_continues_only_when_the_run_matches_the_checkpoints():
    from d2imbalance.resume import data_stream_start

    run = dict(max_iter=100, data_seed=3, dataset_size=24, total_batch_size=2, world_size=1)
    assert data_stream_start(None, run, 0) == (0, None)
    assert data_stream_start(run, run, 0) == (0, None)
    assert data_stream_start(dict(run, max_iter=50), run, 20) == (20, None)
    skip, warning = data_stream_start(None, run, 20)
    assert skip == 0 and "no record of its run" in warning and "first images are seen again" in warning
    for key in ("dataset_size", "total_batch_size", "world_size"):
        skip, warning = data_stream_start(dict(run, **{key: 8}), run, 20)
        assert skip == 0 and f"differs from the checkpoint's in {key} 8 -> {run[key]}: the data order restarts" in warning


def test_a_changed_max_iter_is_named_with_what_it_does_to_the_schedule():
    """The shapes schedule (configs/common/schedules.py, demo): ×1 until 80 % of max_iter, then ×0.1
    (after a 5 % warm-up). Resuming at 500 of a 1000-iteration run with max_iter=600: 500/600 = 0.83
    is past 80 %, so the multiplier drops from 1 to 0.1 at once."""
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.resume import max_iter_change

    scheduler = instantiate(get_config("Baselines/retinanet_shapes.py").lr_multiplier)
    assert max_iter_change(1000, 1000, 500, scheduler) is None
    text = max_iter_change(1000, 600, 500, scheduler)
    assert "train.max_iter=600 differs from the checkpoint's run (train.max_iter=1000)" in text
    assert "the lr multiplier at iteration 500 becomes 0.1 (the original run's: 1)" in text
    assert text.endswith("Pass train.max_iter=1000 to keep the original schedule.")
    longer = max_iter_change(1000, 2000, 900, scheduler)
    assert "becomes 1 (the original run's: 0.1)" in longer
    done = max_iter_change(1000, 500, 500, scheduler)
    assert "already at iteration 500, so nothing is left to train" in done and "multiplier" not in done
    assert "multiplier" not in max_iter_change(1000, 600, 500, scheduler=lambda where: 1.0)


def test_the_run_record_travels_in_the_checkpoint(tmp_path):
    from d2imbalance.checkpoint import ReportingCheckpointer
    from d2imbalance.resume import RunRecord

    record = RunRecord()
    record.current = dict(max_iter=20, data_seed=7)
    ReportingCheckpointer(torch.nn.Linear(2, 2), str(tmp_path), run=record).save("model_final")
    assert torch.load(tmp_path / "model_final.pth")["run"] == {"max_iter": 20, "data_seed": 7}
    resumed = RunRecord()
    ReportingCheckpointer(torch.nn.Linear(2, 2), str(tmp_path), run=resumed).resume_or_load("", resume=True)
    assert resumed.saved == {"max_iter": 20, "data_seed": 7} and resumed.current == {}
    assert RunRecord().saved is None


# --- the engine's loader, on the real shapes dataset and mapper --------------------------------------


def _shapes_cfg(*overrides):
    from d2imbalance import get_config
    from d2imbalance.data.datasets import prepare_datasets
    from d2imbalance.overrides import apply_overrides

    prepare_datasets(["shapes_mini_train"])
    cfg = get_config("Baselines/retinanet_shapes.py")
    return apply_overrides(cfg, ["dataloader.train.dataset.names=shapes_mini_train", "dataloader.train.num_workers=0",
                                 "dataloader.train.total_batch_size=2", "train.max_iter=40", *overrides])


def _files(loader, n):
    return [[d["file_name"].rsplit("/", 1)[-1] for d in batch] for batch, _ in zip(loader, range(n))]


def test_train_net_resumes_the_image_stream_of_the_interrupted_run(caplog):
    """First run: 8 batches from iteration 0. Resumed at iteration 5 with the record its checkpoint
    holds: the next 3 batches are the first run's batches 5-7, image for image."""
    from d2imbalance.engine import build_train_loader
    from d2imbalance.resume import RunRecord

    cfg = _shapes_cfg()
    first = RunRecord()
    uninterrupted = _files(build_train_loader(cfg, first, 0), 8)
    assert first.current["dataset_size"] == 24 and first.current["total_batch_size"] == 2
    assert first.current["world_size"] == 1 and first.current["max_iter"] == 40
    resumed_run = RunRecord()
    resumed_run.load_state_dict(first.state_dict())
    with caplog.at_level("INFO", logger="d2imbalance"):
        resumed = _files(build_train_loader(cfg, resumed_run, 5), 3)
    assert resumed == uninterrupted[5:8]
    assert f"Continuing the data stream after its first 5 batches (seed {first.current['data_seed']})" in caplog.text
    assert "sampler is set" not in caplog.text
    assert resumed_run.current["data_seed"] == first.current["data_seed"]


def test_train_net_restarts_the_stream_with_the_checkpoints_seed_when_the_batch_size_changed(caplog):
    from d2imbalance.engine import build_train_loader
    from d2imbalance.resume import RunRecord

    first = RunRecord()
    uninterrupted = _files(build_train_loader(_shapes_cfg(), first, 0), 2)
    resumed_run = RunRecord()
    resumed_run.load_state_dict(dict(first.current, total_batch_size=4))
    with caplog.at_level("WARNING", logger="d2imbalance"):
        resumed = _files(build_train_loader(_shapes_cfg(), resumed_run, 5), 2)
    assert "total_batch_size 4 -> 2: the data order restarts" in caplog.text
    assert resumed == uninterrupted


def test_a_configured_sampler_is_used_and_its_seed_is_the_users_business(caplog):
    """A sampler in the config replaces the seeded default (here an unshuffled one, without
    grouping: batch k is images 2k, 2k+1); resumed at 5 it continues at images 10, 11, and train_net
    says that this holds only for a sampler with a fixed seed."""
    from detectron2.config import LazyCall as L
    from detectron2.data.samplers import TrainingSampler

    from d2imbalance.engine import build_train_loader
    from d2imbalance.resume import RunRecord

    cfg = _shapes_cfg("+dataloader.train.aspect_ratio_grouping=false")
    cfg.dataloader.train.sampler = L(TrainingSampler)(size=24, shuffle=False)
    with caplog.at_level("WARNING", logger="d2imbalance"):
        first = RunRecord()
        assert _files(build_train_loader(cfg, first, 0), 2) == [["train_00000.jpg", "train_00001.jpg"],
                                                                ["train_00002.jpg", "train_00003.jpg"]]
        assert "sampler is set" not in caplog.text
        resumed = RunRecord()
        resumed.load_state_dict(first.state_dict())
        assert _files(build_train_loader(cfg, resumed, 5), 1) == [["train_00010.jpg", "train_00011.jpg"]]
    assert "dataloader.train.sampler is set: the data order continues only if its seed is fixed" in caplog.text


def test_a_fresh_run_draws_a_new_seed_and_ignores_a_stale_record():
    from d2imbalance.engine import build_train_loader
    from d2imbalance.resume import RunRecord

    run = RunRecord()
    run.load_state_dict(dict(data_seed=123))
    build_train_loader(_shapes_cfg(), run, 0)
    assert run.current["data_seed"] != 123


def _custom_loader(batches):
    return "custom", list(batches)


def test_loaders_of_another_kind_are_built_as_configured_and_warn_on_resume(caplog):
    """A config saved as YAML names its target as a string; a custom target is used as is; a
    non-list dataset goes to detectron2's loader."""
    from detectron2.config import LazyCall as L
    from detectron2.data import DatasetFromList
    from detectron2.data.common import AspectRatioGroupedDataset

    from d2imbalance.engine import build_train_loader
    from d2imbalance.resume import RunRecord

    cfg = _shapes_cfg()
    cfg.dataloader.train._target_ = "detectron2.data.build_detection_train_loader"
    assert len(_files(build_train_loader(cfg, RunRecord(), 0), 1)[0]) == 2

    cfg.dataloader.train = L(_custom_loader)(batches=[1, 2])
    caplog.clear()  # INFO lines of detectron2's loader above are not what this checks
    with caplog.at_level("WARNING", logger="d2imbalance"):
        assert build_train_loader(cfg, RunRecord(), 0) == ("custom", [1, 2])
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        build_train_loader(cfg, RunRecord(), 3)
    assert "its data order restarts from the beginning on --resume" in caplog.text

    cfg = _shapes_cfg()
    cfg.dataloader.train.dataset = L(DatasetFromList)(lst=[dict(file_name="x", width=2, height=3)], copy=False)
    assert isinstance(build_train_loader(cfg, RunRecord(), 0), AspectRatioGroupedDataset)  # detectron2's own
