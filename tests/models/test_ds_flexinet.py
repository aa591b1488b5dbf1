import keras
import numpy as np
import pytest

from asc_keras.layers import DSFlexiBlock
from asc_keras.models import NORMS, VARIANTS, ds_flexinet

pytestmark = pytest.mark.multi_backend


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_trains_and_round_trips(variant, tmp_path):
    # Half the paper's input in each axis: what is checked does not depend on the size.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 128, 32, 1)).astype("float32")
    y = rng.integers(0, 10, size=8)
    model = ds_flexinet(variant, input_shape=x.shape[1:])
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = model.get_layer("logits").get_weights()[0].copy()
    history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(before, model.get_layer("logits").get_weights()[0])

    logits = model.predict(x, verbose=0)
    assert logits.shape == (8, 10)
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), logits, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_norm_option_sets_the_stage_normalisation(norm):
    model = ds_flexinet("sm1", norm=norm)
    stage_norms = [layer for layer in model.layers if layer.name.endswith("_norm")]
    expected = {"residual": ["ResidualNorm"] * 4, "batch": ["BatchNormalization"] * 4, "none": []}
    assert [type(layer).__name__ for layer in stage_norms] == expected[norm]


def test_frequency_axis_option_reaches_every_residual_norm():
    model = ds_flexinet("sm1", rn_axis="frequency")
    axes = {layer.axis for layer in model.layers if type(layer).__name__ == "ResidualNorm"}
    assert axes == {"frequency"}


def test_other_input_shapes_and_class_counts():
    model = ds_flexinet("sm2", num_classes=3, input_shape=(128, 32, 1))
    out = model.predict(np.zeros((2, 128, 32, 1), "float32"), verbose=0)
    assert out.shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "sm5"}, r"'sm5'.*\['sm1', 'sm2', 'sm3', 'sm4'\]"),
        ({"norm": "layer"}, r"'layer'.*\['residual', 'batch', 'none'\]"),
        ({"input_shape": (256, 8, 1)}, r"\(256, 8, 1\).*>= 16"),
        ({"input_shape": (256, 64)}, r"\(256, 64\)"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_bad_arguments_name_the_value_and_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ds_flexinet(**kwargs)


def test_sm2_under_mixed_precision_computes_in_float16_and_keeps_the_logits():
    x = np.random.default_rng(5).normal(-5, 2, (4, 256, 64, 1)).astype("float32")
    reference = ds_flexinet("sm2")
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = ds_flexinet("sm2")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    blocks = [layer for layer in mixed.layers if isinstance(layer, DSFlexiBlock)]
    assert blocks and all(b.compute_dtype == "float16" for b in blocks)
    inner = [sub for b in blocks for sub in b.residual_path + b.shortcut_path]
    assert all(sub.compute_dtype == "float16" for sub in inner)
    probe = keras.Model(mixed.input, blocks[-1].output)
    assert keras.backend.standardize_dtype(probe(x).dtype) == "float16"
    got = keras.ops.convert_to_numpy(mixed(x, training=False)).astype("float32")
    # float16 rounding through about 20 layers: within 5 % of the logits' range (seen: 2-3 %).
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 0.05 * scale, (np.abs(got - expected).max(), scale)
