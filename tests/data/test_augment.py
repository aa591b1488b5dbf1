"""Every augmentation against an independent numpy / scipy formula."""

import numpy as np
import pytest
import scipy.signal
import soundfile
import tensorflow as tf

from asc_keras.data import augment

SEED = tf.constant([3, 4], tf.int64)


def test_roll_is_numpy_roll():
    x = np.random.default_rng(0).normal(size=(3, 100)).astype(np.float32)
    shifts = np.array([-40, 0, 7], np.int32)
    rolled = augment.roll_waveforms(x, shifts).numpy()
    for row, shift, out in zip(x, shifts, rolled):
        np.testing.assert_array_equal(out, np.roll(row, shift))


def test_roll_shifts_stay_within_the_limit_and_follow_the_seed():
    shifts = augment.random_roll_shifts(4000, 4000, SEED).numpy()
    assert shifts.min() >= -4000 and shifts.max() <= 4000 and shifts.min() < -3000
    np.testing.assert_array_equal(shifts, augment.random_roll_shifts(4000, 4000, SEED).numpy())


def test_impulse_response_convolution_is_scipy_full_convolution_truncated():
    rng = np.random.default_rng(1)
    clips = rng.normal(size=(3, 32000)).astype(np.float32)
    responses = [rng.normal(size=n).astype(np.float32) for n in (50, 700, 3)]
    bank = augment.ImpulseResponses(responses, 32000)
    choice = np.array([1, 0, 2], np.int32)
    ours = bank.convolve(clips, choice).numpy()
    for clip, k, out in zip(clips, choice, ours):
        expected = scipy.signal.convolve(clip, responses[k], mode="full", method="direct")[:32000]
        np.testing.assert_allclose(out, expected, atol=2e-4)


def _bank():
    return augment.ImpulseResponses([np.array([0.0, 1.0], np.float32)], 64)  # one-sample delay


def test_dir_is_never_applied_to_devices_not_listed():
    x = np.random.default_rng(2).normal(size=(64, 64)).astype(np.float32)
    eligible = np.arange(64) % 2 == 0
    out = augment.apply_device_impulse_response(x, eligible, _bank(), 1.0, None, SEED).numpy()
    np.testing.assert_array_equal(out[~eligible], x[~eligible])
    np.testing.assert_allclose(out[eligible][:, 1:], x[eligible][:, :-1], atol=1e-5)  # delayed


def test_dir_probability_is_respected():
    x = np.ones((2000, 64), np.float32)
    out = augment.apply_device_impulse_response(x, np.ones(2000, bool), _bank(), 0.6, None, SEED)
    changed = np.any(out.numpy() != x, axis=1).mean()
    assert 0.55 < changed < 0.65
    none = augment.apply_device_impulse_response(x, np.ones(2000, bool), _bank(), 0.0, None, SEED)
    np.testing.assert_array_equal(none.numpy(), x)


def test_adir_never_convolves_a_clip_whose_energy_is_below_tau():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(200, 64)) * rng.uniform(0.1, 2, size=(200, 1))).astype(np.float32)
    energy = np.sum(x.astype(np.float64) ** 2, axis=1)
    tau = float(np.median(energy))
    out = augment.apply_device_impulse_response(x, np.ones(200, bool), _bank(), 1.0, tau, SEED)
    changed = np.any(out.numpy() != x, axis=1)
    np.testing.assert_array_equal(changed, energy > tau)


def test_frequency_mask_is_the_numpy_formula():
    x = np.random.default_rng(4).normal(size=(3, 20, 5, 1)).astype(np.float32)
    starts, widths = np.array([0, 5, 18]), np.array([3, 0, 2])
    out = augment.mask_frequency_bands(x, starts, widths).numpy()
    expected = x.copy()
    for i, (s, w) in enumerate(zip(starts, widths)):
        expected[i, s : s + w] = 0
    np.testing.assert_array_equal(out, expected)


def test_frequency_bands_stay_inside_the_spectrogram():
    starts, widths = augment.random_frequency_bands(5000, 256, 48, SEED)
    starts, widths = starts.numpy(), widths.numpy()
    assert widths.min() == 0 and widths.max() == 48
    assert starts.min() >= 0 and (starts + widths).max() <= 256


def numpy_freq_mixstyle(x, lam, perm, eps):
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)
    lam = lam[:, None, None, None]
    mixed_mean = lam * mean + (1 - lam) * mean[perm]
    mixed_std = lam * std + (1 - lam) * std[perm]
    return (x - mean) / std * mixed_std + mixed_mean


def test_freq_mixstyle_is_the_numpy_formula():
    rng = np.random.default_rng(5)
    x = rng.normal(1.0, 2.0, size=(4, 16, 8, 1)).astype(np.float32)
    lam, perm = np.array([0.1, 0.5, 0.9, 0.3], np.float32), np.array([2, 0, 3, 1])
    out = augment.mix_frequency_statistics(x, lam, perm, 1e-6).numpy()
    np.testing.assert_allclose(
        out, numpy_freq_mixstyle(x.astype(np.float64), lam, perm, 1e-6), atol=1e-4
    )


def test_freq_mixstyle_with_lambda_one_returns_its_input():
    x = np.random.default_rng(6).normal(size=(4, 16, 8, 1)).astype(np.float32)
    out = augment.mix_frequency_statistics(x, np.ones(4, np.float32), np.array([1, 2, 3, 0]), 1e-6)
    np.testing.assert_allclose(out.numpy(), x, atol=1e-5)


def test_freq_mixstyle_probability_zero_is_identity_and_one_always_mixes():
    x = np.random.default_rng(7).normal(size=(8, 16, 8, 1)).astype(np.float32)
    for s in range(5):
        seed = tf.constant([s, 1], tf.int64)
        np.testing.assert_array_equal(augment.freq_mixstyle(x, 0.0, 0.3, 1e-6, seed).numpy(), x)
        assert not np.allclose(augment.freq_mixstyle(x, 1.0, 0.3, 1e-6, seed).numpy(), x)


def test_beta_draws_have_the_beta_mean_and_variance():
    draws = augment.random_beta([20000], 0.3, SEED).numpy()
    assert abs(draws.mean() - 0.5) < 0.02
    assert abs(draws.var() - 0.25 / 1.6) < 0.01  # var of Beta(a, a) = 1 / (4 (2a + 1))


def test_impulse_response_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        augment.load_impulse_responses(tmp_path / "nope", 32000)
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(ValueError, match="holds no .wav files"):
        augment.load_impulse_responses(tmp_path, 32000)
    (tmp_path / "broken.wav").write_bytes(b"RIFFxxxx")
    with pytest.raises(ValueError, match="broken.wav"):
        augment.load_impulse_responses(tmp_path, 32000)


def test_impulse_responses_are_resampled_not_normalised(tmp_path):
    response = np.zeros(480, np.float32)
    response[0] = 0.5
    soundfile.write(tmp_path / "ir.wav", response, 48000, subtype="FLOAT")
    (loaded,) = augment.load_impulse_responses(tmp_path, 32000)
    assert len(loaded) == 320
    assert 0.3 < np.max(np.abs(loaded)) < 0.6


def test_fft_length_is_the_smallest_5_smooth_length():
    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for minimum in list(range(1, 300)) + [32399, 35999, 40001]:
        length = augment.fast_fft_length(minimum)
        assert length >= minimum and smooth(length)
        assert not any(smooth(n) for n in range(minimum, length))
