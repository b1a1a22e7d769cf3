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
    with pytest.raises(ParamError, match=r"size: 100000 is out of range; allowed 32 to 4096"):
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
     ("preserve_color", "yes"), ("optimizer", 3), ("style_layers", [1, 2]), ("scales", [0.5])],
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
