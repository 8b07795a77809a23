import json

import pytest

from d2imbalance.analysis.compare_runs import final_metrics, markdown_table, parse_run_argument


def _run(tmp_path, name, ap, time=1.0, keys=("AP", "AP50", "AP75", "APs", "APm", "APl"), **extra):
    out = tmp_path / name
    out.mkdir()
    rows = [{"iteration": 9, "time": time, "total_loss": 1.0}, {"iteration": 19, "time": time + 0.2}]
    rows.append({"iteration": 10, "bbox/AP": 1.0})  # an earlier evaluation: not the final one
    rows.append({"iteration": 20, **{f"bbox/{k}": ap for k in keys}, **extra})
    (out / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows))
    return str(out)


def test_table_has_a_row_per_run_with_delta_to_the_first(tmp_path):
    table = markdown_table([("base", _run(tmp_path, "a", 10.0)), ("method", _run(tmp_path, "b", 12.5, 2.0))])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| base | 1 | 20 | 10.0 |") and "+0.0 | 1.10 |" in lines[2]
    assert "| 12.5 |" in lines[3] and "+2.5 | 2.10 |" in lines[3]


def test_runs_sharing_a_label_are_seeds_shown_as_mean_and_sample_std(tmp_path):
    """Baseline seeds AP 10, 12, 14: mean 12, sample std 2; method 15, 16: 15.5 ± 0.7 (std 0.707);
    ΔAP is the difference of the means (+3.5); s/iter the mean of the runs' medians; an extra metric
    gets its own column; a metric missing in one run is named with what the run has."""
    base = [_run(tmp_path, f"b{i}", ap, **{"recall_by_size/recall_small@0.3": r})
            for i, (ap, r) in enumerate([(10.0, 40.0), (12.0, 44.0), (14.0, 48.0)])]
    method = [_run(tmp_path, f"m{i}", ap, time=2.0, **{"recall_by_size/recall_small@0.3": 50.0})
              for i, ap in enumerate([15.0, 16.0])]
    table = markdown_table([("SSD", d) for d in base] + [("SSD-SCB", d) for d in method],
                           ["recall_by_size/recall_small@0.3"])
    header, separator, ssd, scb = table.splitlines()
    assert separator == "|---|" + "---:|" * 11  # run, runs, iterations, 6 AP, recall, ΔAP, s/iter
    assert header.count("|") == separator.count("|") == ssd.count("|")
    assert header.endswith("| APl | recall_small@0.3 | ΔAP | s/iter |")
    assert ssd == "| SSD | 3 | 20 | " + " | ".join(["12.0 ± 2.0"] * 6) + " | 44.0 ± 4.0 | +0.0 | 1.10 |"
    assert scb.startswith("| SSD-SCB | 2 | 20 | 15.5 ± 0.7 |") and scb.endswith("| 50.0 ± 0.0 | +3.5 | 2.10 |")
    with pytest.raises(ValueError, match=r"no \['recall_by_size/recall_small@0.1'\].*bbox/AP"):
        markdown_table([("SSD", base[0])], ["recall_by_size/recall_small@0.1"])


def test_ap_keys_an_evaluator_does_not_report_show_a_dash(tmp_path):
    """PascalVOCDetectionEvaluator reports AP, AP50, AP75 only."""
    voc = _run(tmp_path, "voc", 70.0, keys=("AP", "AP50", "AP75"))
    assert final_metrics(voc)["ap"]["AP50"] == 70.0
    row = markdown_table([("SSD VOC", voc)]).splitlines()[2]
    assert row == "| SSD VOC | 1 | 20 | 70.0 | 70.0 | 70.0 | - | - | - | +0.0 | 1.10 |"


def test_missing_or_unevaluated_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        final_metrics(str(tmp_path / "nowhere"))
    out = tmp_path / "noeval"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"iteration": 1, "total_loss": 1.0}))
    with pytest.raises(ValueError, match="no bbox evaluation"):
        final_metrics(str(out))


def test_run_arguments_split_at_the_last_equals_sign():
    assert parse_run_argument("ResObj (T=2)=runs/resobj") == ("ResObj (T=2)", "runs/resobj")
    for bad in ("runs/resobj", "=runs/x", "label="):
        with pytest.raises(ValueError, match="LABEL=OUTPUT_DIR"):
            parse_run_argument(bad)
