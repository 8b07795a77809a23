"""Config lookup by name: a typo gets the closest names, not an arbitrary ten."""
import pytest

from d2imbalance.model_zoo import available_configs, closest_config_names, get_config_file


def test_a_typo_in_a_full_name_suggests_the_intended_config_first():
    with pytest.raises(FileNotFoundError) as error:
        get_config_file("ResObj/retinanet_resobj_shape.py")
    message = str(error.value)
    assert "Closest names: ['ResObj/retinanet_resobj_shapes.py'," in message
    assert "'ResObj/retinanet_resobj_shape.py' is neither an existing file" in message


def test_a_name_without_its_project_directory_is_matched_by_its_file_name():
    """'retinanet_scb_R50_FPN_1x.py' (27 characters) vs 'ScaleBalanced/retinanet_scb_R_50_FPN_1x.py'
    (42): difflib's ratio 2*matches/total is 2*27/69 = 0.78 on the whole names, 2*27/55 = 0.98 on
    the file names, which ranks it first."""
    assert closest_config_names("retinanet_scb_R50_FPN_1x.py")[0] == "ScaleBalanced/retinanet_scb_R_50_FPN_1x.py"
    assert closest_config_names("conf_R_50_FPN_1x_fusion_cls_filtr.py", n=2) == [
        "ObjConf/retinanet_conf_R_50_FPN_1x_fusion_cls_filter.py",
        "ObjConf/retinanet_conf_R_50_FPN_1x_fusion_clsxconf_filter.py",
    ]


def test_suggestions_are_ranked_limited_and_only_close_ones():
    names = closest_config_names("Baselines/retinanet_shapes", n=3)
    assert names[0] == "Baselines/retinanet_shapes.py" and len(names) == 3
    assert len(closest_config_names("retinanet_shapes.py")) == 5  # 8 names reach 0.6
    assert closest_config_names("zzz.py") == []
    with pytest.raises(FileNotFoundError, match="No name is close; .*available_configs"):
        get_config_file("zzz.py")


def test_similarity_threshold_keeps_good_matches_only():
    """'faster_rcnn_shapes.py' vs file 'faster_rcnn_scb_shapes.py': ratio 2*21/46 = 0.91 (kept);
    'x_shapes.py' vs 'retinanet_shapes.py': 2*10/30 = 0.67 (kept, above 0.6); 'xy.py' is at most
    0.28 from any file name."""
    assert "ScaleBalanced/faster_rcnn_scb_shapes.py" in closest_config_names("faster_rcnn_shapes.py", n=10)
    assert "Baselines/retinanet_shapes.py" in closest_config_names("x_shapes.py", n=50)
    assert closest_config_names("xy.py") == []


def test_a_similarity_of_exactly_the_threshold_is_kept(monkeypatch):
    """'Xshapes.pyX' (11 characters) shares 'shapes.py' with 'ssd300_shapes.py' (16): 2*9/27 = 0.67,
    with 'retinanet_shapes.py' (19): 2*9/30 = 0.6, exactly the threshold (kept), and with
    'ssd300_scb_shapes.py' (20): 2*9/31 = 0.58 (dropped). A fixed list, so new configs do not move it."""
    import d2imbalance.model_zoo as model_zoo

    names = ["B/retinanet_shapes.py", "S/ssd300_scb_shapes.py", "B/ssd300_shapes.py"]
    monkeypatch.setattr(model_zoo, "available_configs", lambda: names)
    assert closest_config_names("Xshapes.pyX") == ["B/ssd300_shapes.py", "B/retinanet_shapes.py"]


def test_existing_names_and_paths_resolve():
    assert get_config_file("Baselines/retinanet_shapes.py").endswith("configs/Baselines/retinanet_shapes.py")
    names = available_configs()
    assert "Baselines/retinanet_shapes.py" in names
    assert not [n for n in names if n.startswith("common/") or n.endswith("__init__.py")]


@pytest.mark.detectron2
def test_get_puts_the_model_on_the_device_asked_and_loads_no_weights_unless_asked():
    from d2imbalance import get, get_config

    model = get("Baselines/retinanet_shapes.py", device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"} and not model.training
    assert get_config("Baselines/retinanet_shapes.py").train.init_checkpoint == ""
