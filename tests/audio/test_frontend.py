import librosa
import numpy as np
import pytest

from asc_keras.audio import LogMel
from asc_keras.config import FrontEndConfig


def librosa_log_mel(waveform, config, sample_rate=32000):
    mel = librosa.feature.melspectrogram(
        y=waveform.astype(np.float64),
        sr=sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=config.htk,
    )
    return np.log(mel[..., : 32000 // config.hop_length] + config.log_offset)


@pytest.mark.parametrize("htk", [False, True])
def test_matches_librosa(htk):
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 32000
    clips = np.stack(
        [
            0.1 * rng.normal(size=32000),
            0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.normal(size=32000),
            0.02 * np.sign(np.sin(2 * np.pi * 3 * t)) * rng.normal(size=32000),
        ]
    ).astype(np.float32)
    config = FrontEndConfig(htk=htk)
    ours = LogMel(config)(clips).numpy()
    assert ours.shape == (3, 256, 64)  # the paper: 256 bins x 64 frames per 1 s clip
    reference = librosa_log_mel(clips, config)
    # float32 FFT against librosa's float64: agreement to 1e-3 in the natural-log domain,
    # i.e. 0.1 % of the mel energy, everywhere above the log offset.
    np.testing.assert_allclose(ours, reference, atol=1e-3)


def test_other_settings_still_match_librosa():
    config = FrontEndConfig(n_fft=1024, win_length=800, hop_length=320, n_mels=64, fmax=8000.0)
    clip = np.random.default_rng(1).normal(size=(1, 32000)).astype(np.float32)
    np.testing.assert_allclose(
        LogMel(config)(clip).numpy(), librosa_log_mel(clip, config), atol=1e-3
    )


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="win_length 5000 exceeds n_fft 4096"):
        LogMel(FrontEndConfig(win_length=5000))
    with pytest.raises(ValueError, match="fmax=20000"):
        LogMel(FrontEndConfig(fmax=20000.0))
