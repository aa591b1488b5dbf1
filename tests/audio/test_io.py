import numpy as np
import pytest
import soundfile

from asc_keras.audio import AudioError, load_audio


def test_stereo_44k_is_mono_32k_and_one_second(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, 0.5 * left], axis=1), 44100, subtype="PCM_24")
    waveform = load_audio(path)
    assert waveform.shape == (32000,) and waveform.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(waveform))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins at 32000 samples: still a 1 kHz tone
    np.testing.assert_allclose(np.max(np.abs(waveform[1000:-1000])), 0.375, rtol=0.01)


def test_short_files_are_padded_and_long_ones_cropped(tmp_path):
    for seconds, name in ((0.5, "short.wav"), (2.0, "long.wav")):
        soundfile.write(tmp_path / name, np.full(int(32000 * seconds), 0.25), 32000)
        waveform = load_audio(tmp_path / name)
        assert waveform.shape == (32000,)
    assert np.all(load_audio(tmp_path / "short.wav")[16000:] == 0)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav.*does not exist"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match="corrupt.wav.*cannot be decoded"):
        load_audio(tmp_path / "corrupt.wav")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 32000)
    with pytest.raises(AudioError, match="empty.wav.*empty"):
        load_audio(tmp_path / "empty.wav")
    samples = np.zeros(32000, np.float32)
    samples[5] = np.nan
    soundfile.write(tmp_path / "nan.wav", samples, 32000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*NaN"):
        load_audio(tmp_path / "nan.wav")


def test_a_truncated_wav_is_an_error_and_a_short_complete_one_is_padded(tmp_path):
    # A 1 s 44.1 kHz 24-bit clip as in TAU22 (132 KB), cut to its first 20 KB.
    soundfile.write(tmp_path / "whole.wav", np.full(44100, 0.1), 44100, subtype="PCM_24")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:20_000])
    with pytest.raises(AudioError, match=r"cut.wav' is truncated: .* announces 132300 bytes"):
        load_audio(tmp_path / "cut.wav")
    soundfile.write(tmp_path / "short.wav", np.full(6615, 0.1), 44100, subtype="PCM_24")
    assert load_audio(tmp_path / "short.wav").shape == (32000,)  # complete, 0.15 s: padded
