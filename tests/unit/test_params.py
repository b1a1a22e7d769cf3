import math

import pytest

from nst_engine.params import Limits, ParamError, Params, parse_assignment
from nst_engine.topology import LAYER_NAMES


def test_defaults_are_valid():
    Params().validate()
    assert Params.from_mapping({}) == Params()


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ParamError, match="did you mean 'style_weight'"):
        Params.from_mapping({"styleweight": 3})


def test_out_of_range_says_the_range():
    with pytest.raises(ParamError, match=r"size: 100000 is out of range; allowed 32 to 8192"):
        Params.from_mapping({"size": 100000})
    with pytest.raises(ParamError, match="iterations"):
        Params.from_mapping({"iterations": 10**9})
    with pytest.raises(ParamError, match="iterations"):
        Params.from_mapping({"iterations": -5})


def test_limits_are_the_operators():
    with pytest.raises(ParamError, match="allowed 32 to 256"):
        Params.from_mapping({"size": 512}, limits=Limits(max_size=256))


@pytest.mark.parametrize(
    "key,value",
    [("size", "big"), ("size", True), ("size", 1.5), ("style_weight", math.nan), ("style_weight", math.inf),
     ("preserve_color", "yes"), ("optimizer", 3), ("style_layers", [1, 2]), ("scales", [0.5]),
     ("face_guard", "on")],
)
def test_wrong_types_and_values_are_rejected(key, value):
    with pytest.raises(ParamError, match=key):
        Params.from_mapping({key: value})


def test_values_are_coerced_to_the_field_types():
    p = Params.from_mapping({"size": 256.0, "style_weight": 10, "style_layers": "relu3_1", "scales": [1]})
    assert p.size == 256 and isinstance(p.size, int)
    assert p.style_weight == 10.0 and isinstance(p.style_weight, float)
    assert p.style_layers == ("relu3_1",)
    assert p.scales == (1.0,)


def test_unknown_layer_suggests_one():
    with pytest.raises(ParamError, match="did you mean 'relu4_2'"):
        Params.from_mapping({"content_layers": ["relu4_22"]})


def test_layer_weights_must_match_layers():
    with pytest.raises(ParamError, match="one weight per layer"):
        Params.from_mapping({"style_layer_weights": [1.0]})


def test_overrides_keep_the_base():
    base = Params.from_mapping({"size": 300})
    p = base.with_overrides({"iterations": 7})
    assert (p.size, p.iterations) == (300, 7)


def test_parse_assignment_uses_toml_values_and_bare_words():
    assert parse_assignment("size=256") == ("size", 256)
    assert parse_assignment("optimizer=adam") == ("optimizer", "adam")
    assert parse_assignment("scales=[0.5, 1.0]") == ("scales", [0.5, 1.0])
    assert parse_assignment("preserve_color = true") == ("preserve_color", True)
    with pytest.raises(ParamError):
        parse_assignment("size")


def test_deepest_layer():
    assert Params().deepest_layer() == "relu5_1"
    assert Params(content_layers=("conv2_2",), style_layers=("relu1_1",)).deepest_layer() == "conv2_2"
    assert LAYER_NAMES[0] == "conv1_1" and LAYER_NAMES[-1] == "relu5_4"


def test_to_dict_round_trips():
    p = Params(size=200, style_blend=(1.0, 3.0))
    assert Params.from_mapping(p.to_dict()) == p


@pytest.mark.parametrize("device", ["meta", "cuda:x", "cpu ", "xla", "cuda:123"])
def test_only_real_devices_are_accepted(device):
    with pytest.raises(ParamError, match="not a device"):
        Params.from_mapping({"device": device})


def test_strength_is_a_log_scale_on_the_style_weight_and_stays_in_range():
    from nst_engine.params import STRENGTH_DECADES

    assert Params().effective_style_weight == Params().style_weight  # 0.5 is the plain weight
    low, high = Params(strength=0.0), Params(strength=1.0)
    assert high.effective_style_weight / low.effective_style_weight == pytest.approx(10 ** STRENGTH_DECADES)
    for bad in (-0.1, 1.5):
        with pytest.raises(ParamError, match="strength"):
            Params.from_mapping({"strength": bad})
    assert Params.from_mapping({"strength": 1}).strength == 1.0


def test_variants_change_brush_and_strength_in_turn_within_range():
    p = Params(strength=0.95, style_scale=3.0)
    names = [Params.variant_name(i) for i in range(6)]
    assert names[:5] == ["as given", "larger brushwork", "stronger", "finer brushwork", "lighter"]
    assert names[5] == "as given, seed +5"
    assert p.variant(0) == p
    assert p.variant(1).style_scale == 4.0 and p.variant(2).strength == 1.0  # clamped to the ranges
    assert p.variant(3).style_scale == pytest.approx(1.8) and p.variant(4).strength == pytest.approx(0.65)
    assert [p.variant(i).seed for i in range(6)] == list(range(6))
    for i in range(8):
        p.variant(i).validate()
