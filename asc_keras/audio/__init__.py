from asc_keras.audio.frontend import LogMel, feature_shape, num_frames
from asc_keras.audio.io import AudioError, fix_length, load_audio, resample

__all__ = [
    "AudioError",
    "LogMel",
    "feature_shape",
    "fix_length",
    "load_audio",
    "num_frames",
    "resample",
]
