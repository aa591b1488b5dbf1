"""A small synthetic dataset in the exact TAU22 development layout, for demos and tests.

Ten scenes differ in noise colour, tonal components, modulation and transient events, and
overlap (every clip carries some background of another scene), so they are learnable but not
trivially. Each device colours the sound with its own frequency response, low-pass and noise
floor; s4-s6 appear only in the evaluate split, as in the real data. A folder of microphone-like
impulse responses (44.1 and 48 kHz) serves DIR / ADIR.
"""

import csv
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from asc_keras.data.tau22 import CLASSES, DEVICES, SUBSETS, UNSEEN_DEVICES

FILE_RATE = 44100
CITIES = ("barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague")
EVALUATE_CITIES = CITIES[-2:]  # as in TAU22, some cities appear only in the evaluate split


def _scene_prototypes():
    rng = np.random.default_rng(2022)
    return [
        {
            "slope": rng.uniform(0.3, 1.6),
            "corner": rng.uniform(200, 3000),
            "tones": rng.uniform(150, 9000, size=rng.integers(1, 4)),
            "tone_level": rng.uniform(0.05, 0.4),
            "am_rate": rng.uniform(0.5, 12),
            "event_rate": rng.uniform(0, 12),
            "event_band": rng.uniform(500, 8000),
        }
        for _ in CLASSES
    ]


def _device_responses():
    rng = np.random.default_rng(7)
    freqs = np.fft.rfftfreq(FILE_RATE, 1 / FILE_RATE)
    responses = {}
    for device in DEVICES:
        if device == "a":
            gain_db = np.zeros_like(freqs)
            cutoff, floor = 20000.0, 1e-4
        else:
            anchors = np.geomspace(20, 22050, 8)
            gain_db = np.interp(np.log(freqs + 1), np.log(anchors), rng.uniform(-9, 9, 8))
            cutoff, floor = rng.uniform(5000, 16000), rng.uniform(2e-4, 3e-3)
        lowpass = 1 / np.sqrt(1 + (freqs / cutoff) ** 8)
        responses[device] = (10 ** (gain_db / 20) * lowpass, floor)
    return responses


def _coloured_noise(rng, slope, corner):
    freqs = np.fft.rfftfreq(FILE_RATE, 1 / FILE_RATE)
    spectrum = rng.normal(size=freqs.size) + 1j * rng.normal(size=freqs.size)
    spectrum *= (1 + freqs / corner) ** (-slope)
    noise = np.fft.irfft(spectrum, n=FILE_RATE)
    return noise / (np.std(noise) + 1e-12)


def scene_clip(label, rng, prototypes):
    """One second of scene `label` at 44.1 kHz, before any device colouring."""
    p = prototypes[label]
    t = np.arange(FILE_RATE) / FILE_RATE
    clip = _coloured_noise(rng, p["slope"] * rng.uniform(0.8, 1.2), p["corner"])
    modulation = 1 + 0.8 * np.sin(2 * np.pi * p["am_rate"] * rng.uniform(0.8, 1.2) * t)
    for tone in p["tones"]:
        f = tone * rng.uniform(0.94, 1.06)
        clip += p["tone_level"] * modulation * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * 3
    events = rng.poisson(p["event_rate"])
    for start in rng.integers(0, FILE_RATE - 2000, size=events):
        burst = rng.normal(size=2000) * np.exp(-np.arange(2000) / 300)
        burst = np.convolve(burst, np.hanning(int(FILE_RATE / p["event_band"]) + 2), "same")
        clip[start : start + 2000] += 4 * burst / (np.std(burst) + 1e-12)
    other = prototypes[(label + rng.integers(1, len(CLASSES))) % len(CLASSES)]
    clip += rng.uniform(0.3, 0.9) * _coloured_noise(rng, other["slope"], other["corner"])
    level = 10 ** (rng.uniform(-38, -22) / 20)
    return clip / (np.std(clip) + 1e-12) * level


def record_on_device(clip, device, rng, responses):
    response, floor = responses[device]
    coloured = np.fft.irfft(np.fft.rfft(clip) * response, n=len(clip))
    coloured += rng.normal(size=len(clip)) * floor
    return np.clip(coloured, -0.99, 0.99)


def _impulse_response(rng, rate):
    length = int(rng.integers(64, 600))
    decay = np.exp(-np.arange(length) / rng.uniform(5, 80))
    response = rng.normal(size=length) * decay * rng.uniform(0.1, 0.5)
    response[0] = 1.0
    return response / np.max(np.abs(response)) * rng.uniform(0.5, 1.0)


def _write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def make_synthetic_dataset(
    out,
    train_clips_a=24,
    train_clips_other=6,
    evaluate_clips=3,
    impulse_responses=12,
    seed=0,
    progress=True,
):
    """Writes the dataset under `out`; counts are clips per scene (and per device).

    Returns the number of audio files written.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    prototypes, responses = _scene_prototypes(), _device_responses()
    plan = []  # (split, scene label, device)
    for label in range(len(CLASSES)):
        for device in DEVICES:
            if device not in UNSEEN_DEVICES:
                count = train_clips_a if device == "a" else train_clips_other
                plan += [("train", label, device)] * count
            plan += [("evaluate", label, device)] * evaluate_clips
    (out / "audio").mkdir(parents=True, exist_ok=True)
    meta, splits = [], {"train": [], "evaluate": []}
    for index, (split, label, device) in enumerate(
        tqdm(plan, desc="synthetic", disable=not progress)
    ):
        cities = EVALUATE_CITIES if split == "evaluate" else CITIES[:-2]
        city = cities[rng.integers(len(cities))]
        location = int(rng.integers(0, 20))
        name = f"audio/{CLASSES[label]}-{city}-{location}-{index}-{index % 10}-{device}.wav"
        clip = record_on_device(scene_clip(label, rng, prototypes), device, rng, responses)
        soundfile.write(out / name, clip, FILE_RATE, subtype="PCM_24")
        meta.append((name, CLASSES[label], f"{city}-{location}", device))
        splits[split].append((name, CLASSES[label]))
    _write_tsv(out / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    setup = out / "evaluation_setup"
    _write_tsv(setup / "fold1_train.csv", ["filename", "scene_label"], splits["train"])
    _write_tsv(setup / "fold1_evaluate.csv", ["filename", "scene_label"], splits["evaluate"])
    _write_tsv(setup / "fold1_test.csv", ["filename"], [(n,) for n, _ in splits["evaluate"]])
    # DCASE24's nested subsets: each smaller one is a part of the larger ones.
    order = rng.permutation(len(splits["train"]))
    for subset in SUBSETS:
        keep = sorted(order[: max(1, len(order) * int(subset[5:]) // 100)])
        rows = [splits["train"][i] for i in keep]
        _write_tsv(out / "split_setup" / f"{subset}.csv", ["filename", "scene_label"], rows)
    ir_folder = out / "impulse_responses"
    ir_folder.mkdir(exist_ok=True)
    for i in range(impulse_responses):
        rate = 48000 if i % 2 else FILE_RATE
        soundfile.write(ir_folder / f"ir_{i:02d}.wav", _impulse_response(rng, rate), rate)
    return len(plan)
