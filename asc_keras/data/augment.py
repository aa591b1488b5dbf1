"""Augmentations as pure, batched TensorFlow functions for tf.data.

Each one is split into a deterministic operation (tested against a numpy / scipy formula) and
the random draw of its parameters from a stateless seed, so a seed fixes the result.
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from asc_keras.audio.io import load_audio
from asc_keras.data.tau22 import DatasetError


def split_seed(seed, count):
    """`count` independent stateless seeds derived from one (shape (2,) int) seed."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, num=count))


# Time roll ---------------------------------------------------------------------------------


def roll_waveforms(waveforms, shifts):
    """Rolls each row of (batch, samples) right by its shift (np.roll semantics)."""
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    samples = tf.shape(waveforms)[-1]
    index = tf.math.floormod(tf.range(samples)[None, :] - shifts[:, None], samples)
    return tf.gather(waveforms, index, batch_dims=1)


def random_roll_shifts(batch, max_shift, seed):
    return tf.random.stateless_uniform(
        [batch], seed, minval=-max_shift, maxval=max_shift + 1, dtype=tf.int32
    )


# Device impulse responses (DIR, ADIR) -------------------------------------------------------


def impulse_response_paths(folder):
    """The WAV files of an impulse-response folder; an error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"impulse-response folder {str(folder)!r} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".wav")
    if not paths:
        raise DatasetError(f"impulse-response folder {str(folder)!r} holds no .wav files")
    return paths


def load_impulse_responses(folder, sample_rate):
    """All WAV impulse responses of `folder`, resampled to `sample_rate`, not normalised."""
    return [load_audio(path, sample_rate, duration=None) for path in impulse_response_paths(folder)]


def fast_fft_length(minimum):
    """The smallest length >= `minimum` whose only prime factors are 2, 3 and 5: FFTs of such
    lengths are as fast per sample as powers of two, and up to half as long."""
    best = 1 << (minimum - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35
            while length < minimum:
                length *= 2
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best


class ImpulseResponses:
    """A set of impulse responses held as spectra for fast FFT convolution of clips."""

    def __init__(self, responses, clip_samples):
        longest = max(len(r) for r in responses)
        # A circular convolution this long equals the linear one on the first clip_samples.
        self.fft_length = fast_fft_length(clip_samples + longest - 1)
        self.clip_samples = clip_samples
        padded = np.zeros((len(responses), self.fft_length), np.float32)
        for i, r in enumerate(responses):
            padded[i, : len(r)] = r
        self.spectra = tf.signal.rfft(tf.constant(padded))
        self.count = len(responses)

    def convolve(self, waveforms, choice):
        """'full' convolution of each clip with response `choice[i]`, first samples kept."""
        padded = tf.pad(waveforms, [[0, 0], [0, self.fft_length - self.clip_samples]])
        spectra = tf.signal.rfft(padded)
        product = spectra * tf.gather(self.spectra, choice)
        return tf.signal.irfft(product, fft_length=[self.fft_length])[:, : self.clip_samples]


def impulse_response_mask(eligible, energies, energy_threshold, probability, seed):
    """Which clips get a DIR: an eligible device, energy above the threshold (ADIR), and a
    Bernoulli(probability) draw. `energy_threshold` None means plain DIR (no energy test)."""
    draw = tf.random.stateless_uniform(tf.shape(eligible), seed) < probability
    mask = tf.logical_and(eligible, draw)
    if energy_threshold is not None:
        mask = tf.logical_and(mask, energies > energy_threshold)
    return mask


def apply_device_impulse_response(
    waveforms, eligible, responses, probability, energy_threshold, seed
):
    """DIR / ADIR (paper eq. 3) on a batch; convolves only the clips the mask selects."""
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    mask_seed, choice_seed = split_seed(seed, 2)
    energies = tf.reduce_sum(tf.square(waveforms), axis=-1)
    mask = impulse_response_mask(eligible, energies, energy_threshold, probability, mask_seed)
    selected = tf.where(mask)
    choice = tf.random.stateless_uniform(
        [tf.shape(selected)[0]], choice_seed, maxval=responses.count, dtype=tf.int32
    )
    convolved = responses.convolve(tf.gather_nd(waveforms, selected), choice)
    return tf.tensor_scatter_nd_update(waveforms, selected, convolved)


# Frequency masking --------------------------------------------------------------------------


def mask_frequency_bands(features, starts, widths):
    """Zeroes bins [start, start + width) of each (batch, mels, frames, ...) example."""
    features = tf.convert_to_tensor(features, tf.float32)
    bins = tf.range(tf.shape(features)[1])[None, :]
    starts, widths = tf.cast(starts, tf.int32), tf.cast(widths, tf.int32)
    masked = (bins >= starts[:, None]) & (bins < (starts + widths)[:, None])
    keep = tf.cast(tf.logical_not(masked), features.dtype)
    return features * tf.reshape(
        keep, tf.concat([tf.shape(keep), [1] * (features.shape.rank - 2)], 0)
    )


def random_frequency_bands(batch, bins, max_width, seed):
    """torchaudio FrequencyMasking's draw: width ~ U[0, max_width], start ~ U[0, bins - width]."""
    width_seed, start_seed = split_seed(seed, 2)
    widths = tf.random.stateless_uniform(
        [batch], width_seed, minval=0, maxval=max_width + 1, dtype=tf.int32
    )
    u = tf.random.stateless_uniform([batch], start_seed)
    starts = tf.cast(tf.floor(u * tf.cast(bins - widths + 1, tf.float32)), tf.int32)
    return starts, widths


# Freq-MixStyle ------------------------------------------------------------------------------


def mix_frequency_statistics(features, mix_weight, permutation, epsilon):
    """Freq-MixStyle's mixing on (batch, mels, frames, channels).

    Per example and mel bin, mean and standard deviation over frames and channels (no gradient
    through them); normalise, then re-scale with the statistics mixed with those of
    `permutation`: lam * own + (1 - lam) * other.
    """
    features = tf.convert_to_tensor(features, tf.float32)
    mean = tf.stop_gradient(tf.reduce_mean(features, axis=(2, 3), keepdims=True))
    variance = tf.stop_gradient(tf.math.reduce_variance(features, axis=(2, 3), keepdims=True))
    std = tf.sqrt(variance + epsilon)
    normalized = (features - mean) / std
    lam = tf.reshape(mix_weight, [-1, 1, 1, 1])
    mixed_mean = lam * mean + (1 - lam) * tf.gather(mean, permutation)
    mixed_std = lam * std + (1 - lam) * tf.gather(std, permutation)
    return normalized * mixed_std + mixed_mean


def random_beta(shape, alpha, seed):
    first_seed, second_seed = split_seed(seed, 2)
    a = tf.random.stateless_gamma(shape, first_seed, alpha=alpha)
    b = tf.random.stateless_gamma(shape, second_seed, alpha=alpha)
    return a / (a + b)


def freq_mixstyle(features, probability, alpha, epsilon, seed):
    """Freq-MixStyle on a batch: with `probability`, mix with a random permutation of it,
    lambda ~ Beta(alpha, alpha) per example. Reference: paper II-C1; Kim et al. 2022."""
    features = tf.convert_to_tensor(features, tf.float32)
    apply_seed, beta_seed, perm_seed = split_seed(seed, 3)
    batch = tf.shape(features)[0]

    def mix():
        lam = random_beta([batch], alpha, beta_seed)
        permutation = tf.argsort(tf.random.stateless_uniform([batch], perm_seed))
        return mix_frequency_statistics(features, lam, permutation, epsilon)

    apply = tf.random.stateless_uniform([], apply_seed) < probability
    return tf.cond(apply, mix, lambda: features)
