"""Waveform loading: any WAV soundfile reads, as mono float32 at the target rate, fixed length."""

import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr

from asc_keras.errors import UserError


class AudioError(UserError, ValueError):
    """An audio file that cannot be used; the message names the file."""


def resample(waveform, from_rate, to_rate):
    """Band-limited resampling (soxr, high quality) of a 1-D float array."""
    if from_rate == to_rate:
        return waveform
    return soxr.resample(waveform, from_rate, to_rate, quality="HQ").astype(np.float32)


def fix_length(waveform, num_samples):
    """Crops or zero-pads the end to exactly `num_samples`."""
    if len(waveform) >= num_samples:
        return waveform[:num_samples]
    return np.pad(waveform, (0, num_samples - len(waveform)))


def check_wav_complete(path):
    """Raises `AudioError` when a RIFF WAV file holds less audio than its header announces
    (a truncated copy): decoders read such a file as a shorter clip without a word."""
    with open(path, "rb") as f:
        riff = f.read(12)
        if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return
        size = f.seek(0, 2)
        position = 12
        while position + 8 <= size:
            f.seek(position)
            chunk, length = struct.unpack("<4sI", f.read(8))
            if chunk == b"data":
                available = size - position - 8
                if length > available and length != 0xFFFFFFFF:  # all ones: length unknown
                    raise AudioError(
                        f"audio file {str(path)!r} is truncated: its WAV header announces "
                        f"{length} bytes of audio, the file holds {available}; copy it again"
                    )
                return
            position += 8 + length + (length & 1)


def load_audio(path, sample_rate=32000, duration=1.0):
    """Reads `path` as mono float32 at `sample_rate`, cropped or padded to `duration` seconds
    (`duration` None keeps the whole file).

    Stereo is averaged to mono and other sample rates are resampled; a missing, unreadable,
    truncated, empty or non-finite file raises `AudioError` naming the file. A complete file
    that is shorter than `duration` is zero-padded.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {str(path)!r} does not exist")
    check_wav_complete(path)
    try:
        waveform, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"audio file {str(path)!r} cannot be decoded: {error}") from error
    if waveform.shape[0] == 0:
        raise AudioError(f"audio file {str(path)!r} is empty (0 samples)")
    if not np.all(np.isfinite(waveform)):
        raise AudioError(f"audio file {str(path)!r} contains NaN or infinite samples")
    mono = waveform.mean(axis=1)
    mono = resample(mono, file_rate, sample_rate)
    if duration is not None:
        mono = fix_length(mono, int(round(sample_rate * duration)))
    return mono.astype(np.float32)
