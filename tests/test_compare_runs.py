import json

import pytest

from d2imbalance.analysis.compare_runs import final_metrics, markdown_table, parse_run_argument


def _run(tmp_path, name, ap, time=1.0):
    out = tmp_path / name
    out.mkdir()
    rows = [{"iteration": 9, "time": time, "total_loss": 1.0}, {"iteration": 19, "time": time + 0.2}]
    rows.append({"iteration": 20, **{f"bbox/{k}": ap for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}})
    (out / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows))
    return str(out)


def test_table_has_a_row_per_run_with_delta_to_the_first(tmp_path):
    table = markdown_table([("base", _run(tmp_path, "a", 10.0)), ("method", _run(tmp_path, "b", 12.5, 2.0))])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| base | 20 | 10.0 |") and "+0.0 | 1.10 |" in lines[2]
    assert "| 12.5 |" in lines[3] and "+2.5 | 2.10 |" in lines[3]


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
