import numpy as np
import soundfile

from asc_keras.data.augment import load_impulse_responses
from asc_keras.data.tau22 import DEVICES, UNSEEN_DEVICES, read_split


def test_synthetic_dataset_has_the_real_layout(synthetic_root):
    info = soundfile.info(next((synthetic_root / "audio").glob("*.wav")))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (
        44100,
        1,
        "PCM_24",
        44100,
    )
    train, evaluate = read_split(synthetic_root, "train"), read_split(synthetic_root, "evaluate")
    assert not {r.device for r in train} & set(UNSEEN_DEVICES)
    assert {r.device for r in evaluate} == set(DEVICES)
    assert len({r.label for r in train}) == 10
    assert len(load_impulse_responses(synthetic_root / "impulse_responses", 32000)) == 4


def test_devices_colour_the_sound_differently(synthetic_root):
    def mean_spectrum(device):
        paths = sorted((synthetic_root / "audio").glob(f"*-{device}.wav"))[:10]
        spectra = [np.abs(np.fft.rfft(soundfile.read(p)[0]))[:20000] for p in paths]
        bands = np.log(np.mean(spectra, axis=0).reshape(20, -1).mean(axis=1))
        return bands - bands.mean()

    a, b, s5 = mean_spectrum("a"), mean_spectrum("b"), mean_spectrum("s5")
    # natural-log band energies: 0.5 is about 4 dB in at least one of 20 bands
    assert np.abs(a - b).max() > 0.5 and np.abs(a - s5).max() > 0.5
