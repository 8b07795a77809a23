"""Figs. 2/4 as the paper measures them (resobj.curves, tools/eval_objectness_curves.py): pooled mean
objectness of positive / negative anchors over a dataset, every anchor given o_0 + r_1 + ... + r_t."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from resobj.curves import (
    EVAL_PREFIX,
    ObjectnessCurveAccumulator,
    checkpoint_iteration,
    list_checkpoints,
    write_curve_records,
)
from resobj.visualize import plot_objectness_curves, read_objectness_curves

ROOT = Path(__file__).resolve().parents[1]
L3, L9 = math.log(3.0), math.log(9.0)  # sigmoid(+-ln 3) = 0.75 / 0.25, sigmoid(+-ln 9) = 0.9 / 0.1


def test_accumulator_hand_computed():
    """Batch 1 (2 images): o_0 = [[0, -ln3, 5], [-ln9, ln3, -ln3]], r_1 = [[ln3, 0, 0], [0, ln3, -ln3]],
    labels [[1, 0, -1], [0, 1, 0]] (the anchor with logit 5 is ignored).
      t=0: positives 0.5, 0.75 -> 0.625; negatives 0.25, 0.1, 0.25 -> 0.2.
      t=1 (o_1 = [[ln3, -ln3, 5], [-ln9, ln9, -ln9]], no gate): positives 0.75, 0.9 -> 0.825;
          negatives 0.25, 0.1, 0.1 -> 0.15.
    Batch 2 (1 image): o_0 = [ln9, -ln9, -ln9], r_1 = [0, 0, ln9], labels [1, 0, 0]; o_1 = [ln9, -ln9, 0].
    Pooled over 3 positives and 5 negatives:
      t=0: positives (0.5 + 0.75 + 0.9) / 3 = 0.71667; negatives (0.6 + 0.1 + 0.1) / 5 = 0.16;
      t=1: positives (0.75 + 0.9 + 0.9) / 3 = 0.85;   negatives (0.45 + 0.1 + 0.5) / 5 = 0.21.
    """
    acc = ObjectnessCurveAccumulator(1)
    # float64 sums: a dataset's ~1e7-1e9 negative anchors exceed float32's exact range (2^24 + 1 -> 2^24)
    assert acc.pos_sum.dtype == acc.neg_sum.dtype == torch.float64
    acc.update(torch.tensor([[0.0, -L3, 5.0], [-L9, L3, -L3]]), [torch.tensor([[L3, 0.0, 0.0], [0.0, L3, -L3]])],
               torch.tensor([[1, 0, -1], [0, 1, 0]]))
    first = acc.result()
    assert first["obj_pos_t0"] == pytest.approx(0.625) and first["obj_neg_t0"] == pytest.approx(0.2)
    assert first["obj_pos_t1"] == pytest.approx(0.825) and first["obj_neg_t1"] == pytest.approx(0.15)
    acc.update(torch.tensor([[L9, -L9, -L9]]), [torch.tensor([[0.0, 0.0, L9]])], torch.tensor([[1, 0, 0]]))
    pooled = acc.result()
    assert pooled == pytest.approx({"obj_pos_t0": 2.15 / 3, "obj_neg_t0": 0.16, "obj_pos_t1": 0.85,
                                    "obj_neg_t1": 0.21, "num_pos": 3.0, "num_neg": 5.0})


def test_accumulator_for_retinanet_obj():
    """T = 0 (RetinaNet-Obj, the model of Fig. 2): only step 0. Positives sigmoid(ln 3) = 0.75, negatives
    sigmoid(-ln 9) = 0.1 and sigmoid(-ln 3) = 0.25 -> 0.175."""
    acc = ObjectnessCurveAccumulator(0)
    acc.update(torch.tensor([[L3, -L9, -L3]]), [], torch.tensor([[1, 0, 0]]))
    assert acc.result() == pytest.approx({"obj_pos_t0": 0.75, "obj_neg_t0": 0.175, "num_pos": 1.0, "num_neg": 2.0})


def test_accumulator_errors():
    acc = ObjectnessCurveAccumulator(2)
    with pytest.raises(ValueError, match="1 residual tensors for an accumulator of T=2"):
        acc.update(torch.zeros(1, 3), [torch.zeros(1, 3)], torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="no positive anchors"):
        acc.result()
    acc.update(torch.zeros(1, 2), [torch.zeros(1, 2)] * 2, torch.tensor([[1, -1]]))
    with pytest.raises(ValueError, match="no negative anchors"):
        acc.result()
    with pytest.raises(ValueError, match="num_steps=-1"):
        ObjectnessCurveAccumulator(-1)


def test_checkpoint_iteration_and_listing(tmp_path):
    assert checkpoint_iteration("x/model_final.pth", {"iteration": 999}) == 999
    assert checkpoint_iteration("x/model_0000499.pth", {}) == 499
    assert checkpoint_iteration("x/model_0000499.pth") == 499
    with pytest.raises(ValueError, match="stores no 'iteration'"):
        checkpoint_iteration("x/model_final.pth", {})
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model_final.pth", "model_0000199.pth", "model_0000099.pth", "metrics.json"):
        (run / name).write_text("x")
    single = tmp_path / "other.pth"
    single.write_text("x")
    assert [Path(p).name for p in list_checkpoints([str(run), str(single)])] == [
        "model_0000099.pth", "model_0000199.pth", "model_final.pth", "other.pth"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no model_"):
        list_checkpoints([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match="does not exist"):
        list_checkpoints([str(tmp_path / "missing.pth")])


def test_records_round_trip_and_plot(tmp_path):
    results = [(99, {"obj_pos_t0": 0.2, "obj_neg_t0": 0.01, "obj_pos_t1": 0.3, "obj_neg_t1": 0.008, "num_pos": 5.0}),
               (199, {"obj_pos_t0": 0.4, "obj_neg_t0": 0.005, "obj_pos_t1": 0.5, "obj_neg_t1": 0.004, "num_pos": 6.0})]
    path = write_curve_records(results, str(tmp_path / "out" / "curves.json"))
    lines = [json.loads(x) for x in Path(path).read_text().splitlines()]
    assert lines[0] == {"iteration": 99, **{EVAL_PREFIX + k: v for k, v in results[0][1].items()}}
    prefix, curves = read_objectness_curves(path)
    assert prefix == "eval_objectness/"
    assert curves[("pos", 1)] == ([99, 199], [0.3, 0.5]) and curves[("neg", 0)] == ([99, 199], [0.01, 0.005])
    png = plot_objectness_curves(path, str(tmp_path / "curves.png"))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.detectron2
def test_objectness_statistics_on_a_tiny_model_match_an_independent_computation():
    """Two batches; every anchor's sigmoid(o_0 + r_1 + ... + r_t), pooled over positive (negative) anchors
    labelled by the model's matcher, computed from the raw head outputs."""
    from resobj.curves import objectness_statistics
    from test_resobj_losses import retina_raw, spread_residuals
    from test_resobj_models import images, tiny_resobj

    model = tiny_resobj(2)
    spread_residuals(model.head)
    model.train()
    batches = [images(((0, 1), (2,))), images(((1,),), seed=5)]
    stats = objectness_statistics(model, batches)
    assert model.training  # mode restored
    pos_sum, neg_sum, n_pos, n_neg = [0.0] * 3, [0.0] * 3, 0, 0
    for batch in batches:
        raw = retina_raw(model, batch)
        pos, neg = raw["labels"] == 1, raw["labels"] == 0
        o = raw["o0"]
        for t in range(3):
            if t:
                o = o + raw["residuals"][t - 1]
            pos_sum[t] += torch.sigmoid(o)[pos].double().sum().item()
            neg_sum[t] += torch.sigmoid(o)[neg].double().sum().item()
        n_pos, n_neg = n_pos + int(pos.sum()), n_neg + int(neg.sum())
    assert stats["num_pos"] == n_pos and stats["num_neg"] == n_neg and stats["num_images"] == 3
    for t in range(3):
        assert stats[f"obj_pos_t{t}"] == pytest.approx(pos_sum[t] / n_pos, rel=1e-6)
        assert stats[f"obj_neg_t{t}"] == pytest.approx(neg_sum[t] / n_neg, rel=1e-6)
    assert stats["obj_pos_t2"] != pytest.approx(stats["obj_pos_t0"], rel=1e-3)  # the residuals matter here
    with pytest.raises(ValueError, match="needs 'instances'"):
        objectness_statistics(model, [[{"image": batches[0][0]["image"]}]])


@pytest.mark.detectron2
def test_statistics_need_a_resobj_model():
    from resobj.curves import objectness_statistics
    from test_resobj_models import tiny_retinanet

    with pytest.raises(ValueError, match="need a RetinaNetResObj model, got RetinaNet"):
        objectness_statistics(tiny_retinanet(), [])


@pytest.mark.detectron2
def test_eval_tool_on_shapes_checkpoints(tmp_path):
    """Two checkpoints of the shapes config (random weights, iterations 9 and 19; model_final repeats 9) over 2 shapes_val
    images: one record per checkpoint, sorted by iteration, and a PNG. Untrained, every anchor starts
    near the 0.01 objectness prior."""
    from detectron2.config import LazyConfig, instantiate

    config = ROOT / "configs" / "ResObj" / "retinanet_resobj_shapes.py"
    run = tmp_path / "run"
    run.mkdir()
    for it, seed in ((19, 1), (9, 0)):
        torch.manual_seed(seed)
        state = instantiate(LazyConfig.load(str(config)).model).state_dict()
        torch.save({"model": state, "iteration": it}, run / f"model_{it:07d}.pth")
    torch.save({"model": state, "iteration": 9}, run / "model_final.pth")  # repeats iteration 9: one record
    spec = importlib.util.spec_from_file_location("eval_objectness_curves", ROOT / "tools" / "eval_objectness_curves.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--config-file", str(config), "--checkpoints", str(run), "--max-images", "2", "-o", str(tmp_path / "c")])
    records = [json.loads(x) for x in (tmp_path / "c.json").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [9, 19]
    for r in records:
        assert r["eval_objectness/num_images"] == 2 and r["eval_objectness/num_pos"] > 0
        for t in range(3):
            assert 0.005 < r[f"eval_objectness/obj_neg_t{t}"] < 0.02
    assert (tmp_path / "c.png").stat().st_size > 1000
