import json

import keras
import pytest

from asc_keras import ds_flexinet
from asc_keras.complexity import MAX_MACS, MAX_PARAM_BYTES, count_model, variant_report
from asc_keras.layers import DSFlexiBlock, ResidualNorm


def test_hand_count_of_a_small_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 4x4x4
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = ResidualNorm()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3)(x)
    counted = count_model(keras.Model(inputs, outputs))
    # conv: 9*4 + 4 bias = 40 params, 16 positions * 36 = 576 MACs; BN: 8 params (no running
    # stats); depthwise: 36 params, 16 * 36 = 576 MACs; RN: 1; dense: 12 + 3 params, 12 MACs.
    assert counted.params == 40 + 8 + 36 + 1 + 15
    assert counted.macs == 576 + 576 + 12


def test_hand_count_of_a_block():
    inputs = keras.Input((8, 8, 4))
    counted = count_model(keras.Model(inputs, DSFlexiBlock(8, expansion=3, strides=2)(inputs)))
    # expand 1x1 (8x8 positions): 4*12; depthwise 3x3 (4x4): 9*12; project (4x4): 12*8;
    # pooled shortcut 1x1 (4x4): 4*8. BNs: 2 * (12 + 12 + 8 + 8).
    assert counted.macs == 64 * 48 + 16 * 108 + 16 * 96 + 16 * 32
    assert counted.params == 48 + 108 + 96 + 32 + 2 * (12 + 12 + 8 + 8)


def test_variants_match_paper_table_ii_within_half_a_percent():
    # docs/architecture.md: the variant table reproduces Table II within 0.5 %.
    for row in variant_report():
        assert abs(row["params_ratio"] - 1) <= 0.005, row
        assert abs(row["macs_ratio"] - 1) <= 0.005, row
        assert row["param_bytes"] <= MAX_PARAM_BYTES and row["macs"] <= MAX_MACS


def test_unknown_layer_is_refused_by_name():
    inputs = keras.Input((10, 4))
    outputs = keras.layers.GRU(3, name="my_gru")(inputs)
    with pytest.raises(ValueError, match="'my_gru' of type GRU"):
        count_model(keras.Model(inputs, outputs))


def test_limits_are_reported():
    inputs = keras.Input((256, 64, 1))
    outputs = keras.layers.Conv2D(64, 3, padding="same")(inputs)  # 256*64*9*64 = 9.4 M MACs
    x = keras.layers.Conv2D(64, 3, padding="same")(outputs)  # 256*64*9*64*64 MACs
    counted = count_model(keras.Model(inputs, x))
    assert counted.macs > MAX_MACS and not counted.within_limits


def test_tool_prints_json(capsys):
    from tools.complexity import main

    main(["sm2", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["variant"] == "sm2"
    assert row["params"] == count_model(ds_flexinet("sm2")).params
