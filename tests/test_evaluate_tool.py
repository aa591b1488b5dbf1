"""tools/evaluate.py refuses a model file it cannot run or that does not fit the config,
before reading any data."""

import pytest

from tests.helpers import call_tool


def run_evaluate(model, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model:\n  variant: sm1\n")
    return call_tool("evaluate", model, config)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.tflite", None, "missing.tflite' does not exist"),
        ("garbage.tflite", b"not a flatbuffer at all", "is not a TFLite model"),
        ("missing.keras", None, "missing.keras' does not exist"),
    ],
)
def test_a_model_file_that_cannot_run_is_a_clear_error(tmp_path, name, content, message):
    model = tmp_path / name
    if content is not None:
        model.write_bytes(content)
    done = run_evaluate(model, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_model_that_does_not_fit_the_config_is_a_clear_error(tmp_path):
    """The config gives inputs (256, frames, 1) and 10 classes; a .tflite model of another
    input shape and a .keras model of another class count are refused, naming both."""
    import tensorflow as tf

    function = tf.function(lambda x: tf.reduce_mean(x, axis=(1, 2)) * tf.ones((1, 10)))
    spec = tf.TensorSpec([1, 64, 32, 1], tf.float32)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function(spec)]
    )
    small_input = tmp_path / "small_input.tflite"
    small_input.write_bytes(converter.convert())
    done = run_evaluate(small_input, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "takes inputs (64, 32, 1) and gives 10 classes" in done.stderr
    assert "the config gives inputs (256, " in done.stderr and "Traceback" not in done.stderr

    import keras

    inputs = keras.Input((256, 101, 1))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    three_classes = tmp_path / "three_classes.keras"
    keras.Model(inputs, outputs).save(three_classes)
    done = run_evaluate(three_classes, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "gives 3 classes; the config gives inputs (256, " in done.stderr
    assert "and 10 classes" in done.stderr and "Traceback" not in done.stderr
