from asc_keras.audio.frontend import LogMel, num_frames
from asc_keras.audio.io import AudioError, fix_length, load_audio, resample

__all__ = ["AudioError", "LogMel", "fix_length", "load_audio", "num_frames", "resample"]
