"""Command-line overrides are checked against the config before anything is applied."""
import pytest

pytestmark = pytest.mark.detectron2


def _cfg():
    from d2imbalance import get_config

    return get_config("ResObj/retinanet_resobj_shapes.py")


def _apply(*overrides):
    from d2imbalance.overrides import apply_overrides

    return apply_overrides(_cfg(), list(overrides))


def _error(*overrides) -> str:
    with pytest.raises(ValueError) as error:
        _apply(*overrides)
    return str(error.value)


def test_a_misspelt_key_is_refused_with_the_closest_keys_and_the_way_to_add_one():
    message = _error("trian.max_iter=1")
    assert "'trian.max_iter=1': the config has no key 'trian.max_iter'. Did you mean train.max_iter?" in message
    assert "write +trian.max_iter=1" in message
    assert "Did you mean model.head.num_steps or " in _error("model.head.num_stepss=3")
    assert "Did you mean" not in _error("zzzzzz=3")  # nothing close
    assert "has no key 'train.max_iter.x'" in _error("train.max_iter.x=3")  # below a value
    assert "has no key 'model.anchor_generator.sizes.5'" in _error("model.anchor_generator.sizes.5=[1]")  # 5 items


def test_keys_under_or_at_an_unresolvable_interpolation_are_checked_without_resolving_it():
    """'${nope}' points nowhere: below it there is no key; the key itself exists, its value
    unknown, so any value is accepted."""
    from d2imbalance.overrides import apply_overrides

    cfg = _cfg()
    cfg.train.broken = "${nope}"
    with pytest.raises(ValueError, match="has no key 'train.broken.x'"):
        apply_overrides(cfg, ["train.broken.x=1"])
    assert apply_overrides(cfg, ["train.broken=3"]).train.broken == 3


def test_an_existing_list_item_can_be_set():
    assert _apply("model.anchor_generator.sizes.0=[8,10]").model.anchor_generator.sizes[0] == [8, 10]


@pytest.mark.parametrize("word, value", [
    ("true", True), ("True", True), ("yes", True), ("YES", True), ("on", True), ("1", True), ("'1'", True),
    ("false", False), ("no", False), ("No", False), ("off", False), ("OFF", False), ("0", False),
])
def test_booleans_accept_the_usual_words(word, value):
    cfg = _apply(f"train.amp.enabled={word}", f"train.validate_datasets={word}")
    assert cfg.train.amp.enabled is value and cfg.train.validate_datasets is value


@pytest.mark.parametrize("word", ["maybe", "2", "0.5", "[true]"])
def test_other_values_of_a_bool_are_refused(word):
    assert "train.amp.enabled is a bool; pass true/false, yes/no, on/off or 1/0" in _error(f"train.amp.enabled={word}")


def test_ints_floats_strings_lists_and_groups_are_typed():
    assert "train.max_iter is an int (now 1000); pass a whole number" in _error("train.max_iter=ten")
    assert "is an int" in _error("train.max_iter=1.5") and "is an int" in _error("train.max_iter=true")
    assert "optimizer.lr is a float (now 0.01)" in _error("optimizer.lr=fast")
    assert "is a float" in _error("optimizer.lr=true")
    assert "train.output_dir is a str" in _error("train.output_dir=[1,2]")
    assert "train.output_dir is a str" in _error("train.output_dir={a:1}")
    assert "model.anchor_generator.sizes is a list (now of 5 items)" in _error("model.anchor_generator.sizes=16")
    message = _error("model.head=3")
    assert "model.head is a group of settings (" in message and "set one of them, e.g. model.head." in message
    cfg = _apply("train.max_iter=7", "optimizer.lr=1", "train.output_dir=2024", "model.anchor_generator.sizes=[[8]]",
                 "train.lr_reference={lr:0.5,total_batch_size:2}")
    assert cfg.train.max_iter == 7 and cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.train.output_dir == "2024" and cfg.model.anchor_generator.sizes == [[8]]
    assert cfg.train.lr_reference == {"lr": 0.5, "total_batch_size": 2}


def test_a_str_key_takes_several_names_as_a_list():
    cfg = _apply("dataloader.train.dataset.names=[shapes_train,shapes_mini_train]")
    assert cfg.dataloader.train.dataset.names == ["shapes_train", "shapes_mini_train"]
    assert "is a str" in _error("dataloader.train.dataset.names=[a,1]")


def test_null_and_none_valued_keys_and_objects_accept_anything():
    cfg = _apply("model.head.objectness_prior=null", "model.head.class_prior=0.25", "model._target_=x.Y")
    assert cfg.model.head.objectness_prior is None and cfg.model.head.class_prior == 0.25
    assert cfg.model._target_ == "x.Y"


def test_new_keys_need_a_plus_and_only_new_keys_take_it():
    cfg = _apply("+model.head.extra_arg=3", "+train.notes=hello")
    assert cfg.model.head.extra_arg == 3 and cfg.train.notes == "hello"
    assert "train.max_iter already exists; drop the '+'" in _error("+train.max_iter=3")


def test_other_hydra_forms_are_refused_with_what_is_supported():
    for text in ("~train.max_iter", "++train.max_iter=3"):
        assert "only key=value (change a key) and +key=value (add a key" in _error(text)
    assert "'train.max_iter=1,2' is a Hydra sweep; for a list value write train.max_iter=[...]" in _error(
        "train.max_iter=1,2")
    assert "'train.max_iter=[1' is not a key=value override" in _error("train.max_iter=[1")


def test_every_problem_is_reported_at_once_and_nothing_is_applied():
    from d2imbalance.overrides import apply_overrides

    cfg = _cfg()
    with pytest.raises(ValueError) as error:
        apply_overrides(cfg, ["train.max_iter=5", "trian.max_iter=1", "train.amp.enabled=maybe"])
    assert str(error.value).count("\n  ") == 2
    assert cfg.train.max_iter == 1000


def test_checked_overrides_are_rewritten_to_the_intended_type():
    from d2imbalance.overrides import check_overrides

    assert check_overrides(_cfg(), ["train.amp.enabled=off", "optimizer.lr=1", "train.output_dir=2024",
                                    "train.max_iter=3"]) == [
        "train.amp.enabled=false", "optimizer.lr=1.0", "train.output_dir='2024'", "train.max_iter=3"]


def test_train_net_setup_uses_the_checked_overrides(tmp_path):
    from d2imbalance.engine import default_argument_parser, setup

    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", "trian.max_iter=1", f"train.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="Did you mean train.max_iter"):
        setup(args)
