"""The log-mel front end as a Keras layer (keras.ops only), for models that take waveforms."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="asc_keras")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform (batch, samples) -> log-mel (batch, n_mels, frames, 1).

    The same numbers as `asc_keras.audio.LogMel`, the training pipeline's front end (pinned to
    librosa by its tests): log(mel(|STFT|^2) + log_offset), a centred reflect-padded STFT with a
    periodic Hann window of `win_length` centred in `n_fft`, librosa's mel filterbank (Slaney
    unless `htk`), `samples // hop_length` frames. Nothing in it trains; the filterbank is
    rebuilt from the config on load, so a saved model holds no copy of it.
    """

    def __init__(
        self,
        sample_rate=32000,
        n_fft=4096,
        win_length=3072,
        hop_length=500,
        n_mels=256,
        fmin=0.0,
        fmax=16000.0,
        htk=False,
        log_offset=1e-5,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")  # a spectrum is not computed in float16
        super().__init__(**kwargs)
        if win_length > n_fft:
            raise ValueError(f"LogMelSpectrogram: win_length {win_length} exceeds n_fft {n_fft}")
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise ValueError(
                f"LogMelSpectrogram needs 0 <= fmin < fmax <= sample_rate / 2; got fmin={fmin}, "
                f"fmax={fmax}, sample_rate={sample_rate}"
            )
        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.fmin, self.fmax = hop_length, n_mels, fmin, fmax
        self.htk, self.log_offset = htk, log_offset
        self.input_spec = keras.layers.InputSpec(ndim=2)

    @classmethod
    def from_frontend(cls, frontend, sample_rate=32000, **kwargs):
        """The layer of a config's `frontend` section (`FrontEndConfig`)."""
        fields = ("n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "htk")
        settings = {name: getattr(frontend, name) for name in fields}
        return cls(sample_rate, log_offset=frontend.log_offset, **settings, **kwargs)

    def build(self, input_shape):
        samples = input_shape[-1]
        if samples is None:
            raise ValueError("LogMelSpectrogram needs a fixed number of samples per clip")
        frames = samples // self.hop_length
        # Frame t holds the win_length windowed samples centred on sample t * hop_length of
        # the reflect-padded signal; zero-padding them to n_fft in the FFT gives the power
        # spectrum of librosa's window-in-n_fft framing.
        offset = (self.n_fft - self.win_length) // 2
        starts = np.arange(frames)[:, None] * self.hop_length + offset
        self._frames = ops.convert_to_tensor(starts + np.arange(self.win_length), "int32")
        n = np.arange(self.win_length)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.win_length)
        self._window = ops.convert_to_tensor(window, "float32")
        import librosa  # here, not at import: `import asc_keras` stays light

        mel = librosa.filters.mel(
            sr=self.sample_rate,
            n_fft=self.n_fft,
            n_mels=self.n_mels,
            fmin=self.fmin,
            fmax=self.fmax,
            htk=self.htk,
        )
        self._mel = ops.convert_to_tensor(mel.T.astype(np.float32))  # (bins, mels)

    def call(self, waveform):
        pad = self.n_fft // 2
        padded = ops.pad(ops.cast(waveform, "float32"), [[0, 0], [pad, pad]], mode="reflect")
        framed = ops.take(padded, self._frames, axis=1) * self._window  # (batch, frames, win)
        real, imag = ops.rfft(framed, fft_length=self.n_fft)
        mel = ops.matmul(real * real + imag * imag, self._mel)  # (batch, frames, mels)
        log_mel = ops.log(mel + self.log_offset)
        return ops.expand_dims(ops.transpose(log_mel, (0, 2, 1)), -1)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else samples // self.hop_length
        return (input_shape[0], self.n_mels, frames, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "htk": self.htk,
            "log_offset": self.log_offset,
        }


def with_frontend(model, frontend, sample_rate=32000, duration=1.0):
    """`model` (log-mel in) behind the `LogMelSpectrogram` of `frontend` (a config's
    `FrontEndConfig`): a Keras model from `sample_rate * duration` samples to the same logits,
    which `keras.saving.load_model` loads once asc_keras is imported."""
    samples = int(round(sample_rate * duration))
    waveform = keras.Input((samples,), name="waveform")
    features = LogMelSpectrogram.from_frontend(frontend, sample_rate, name="log_mel")(waveform)
    expected = tuple(model.input_shape[1:])
    got = tuple(features.shape[1:])
    if expected != got:
        raise ValueError(
            f"model {model.name!r} takes inputs {expected}; the front end gives {got} "
            f"({frontend.n_mels} mel bins, {samples} samples // hop {frontend.hop_length})"
        )
    return keras.Model(waveform, model(features), name=f"{model.name}_waveform")
