"""LogMelSpectrogram gives the training front end's numbers on every backend, and a model
behind it takes waveforms and survives a .keras round trip."""

import keras
import numpy as np
import pytest

from asc_keras.audio import LogMel
from asc_keras.config import FrontEndConfig
from asc_keras.layers import LogMelSpectrogram, with_frontend
from asc_keras.models import ds_flexinet

pytestmark = pytest.mark.multi_backend

SMALL = FrontEndConfig(n_fft=512, win_length=400, hop_length=160, n_mels=40, fmax=8000.0)


def waveforms(count, samples, seed=0):
    rng = np.random.default_rng(seed)
    tone = np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)
    return (0.3 * rng.normal(size=(count, samples)) + tone).astype("float32")


@pytest.mark.parametrize(
    "frontend, sample_rate", [(FrontEndConfig(), 32000), (SMALL, 16000)], ids=["paper", "small"]
)
def test_the_layer_computes_the_training_front_end(frontend, sample_rate):
    x = waveforms(2, sample_rate // 2)
    expected = np.asarray(LogMel(frontend, sample_rate)(x))[..., None]
    layer = LogMelSpectrogram.from_frontend(frontend, sample_rate)
    got = keras.ops.convert_to_numpy(layer(x))
    assert got.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=0)


def test_config_round_trip_and_bad_settings():
    layer = LogMelSpectrogram.from_frontend(SMALL, 16000)
    clone = LogMelSpectrogram.from_config(layer.get_config())
    x = waveforms(1, 4000)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(layer(x))
    )
    with pytest.raises(ValueError, match="win_length 600 exceeds n_fft 512"):
        LogMelSpectrogram(n_fft=512, win_length=600)
    with pytest.raises(ValueError, match="fmax=9000"):
        LogMelSpectrogram(sample_rate=16000, fmax=9000.0)


def test_a_waveform_model_gives_the_student_logits_and_loads_without_custom_objects(tmp_path):
    student = ds_flexinet("sm1", input_shape=(40, 50, 1))
    model = with_frontend(student, SMALL, sample_rate=16000, duration=0.5)
    assert model.input_shape == (None, 8000) and student.count_params() == model.count_params()
    x = waveforms(3, 8000, seed=1)
    features = np.asarray(LogMel(SMALL, 16000)(x))[..., None]
    np.testing.assert_allclose(
        model.predict(x, verbose=0), student.predict(features, verbose=0), atol=1e-3
    )
    model.save(tmp_path / "waveform.keras")
    loaded = keras.saving.load_model(tmp_path / "waveform.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match=r"takes inputs \(40, 50, 1\); the front end gives"):
        with_frontend(student, SMALL, sample_rate=16000, duration=1.0)
