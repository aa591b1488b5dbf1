"""A small synthetic dataset in the exact TAU22 development layout, for demos and tests.

Ten scenes are mixtures of the same ten kinds of sound event (speech, footsteps, engines,
traffic, birds, chimes, squeals, wind, music, rail clatter) in their own proportions, over
their own background and reverberation, so that similar scenes are confused as in TAU22. Every
recording place (scene, city, location) changes its scene's event rates, background and
reverberation a little, and the evaluate split's cities are not in the training split. Each
device colours the sound with its own frequency response, band limits and noise floor; the
unseen s4-s6 (only in the evaluate split, as in the real data) more strongly, with resonances
and saturation. A folder of microphone-like impulse responses (44.1 and 48 kHz) serves DIR /
ADIR.
"""

import csv
import math
import zlib
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from asc_keras.data.tau22 import CLASSES, DEVICES, SUBSETS, UNSEEN_DEVICES

FILE_RATE = 44100
CITIES = ("barcelona", "helsinki", "lisbon", "london", "lyon", "milan", "paris", "prague")
EVALUATE_CITIES = CITIES[-2:]  # as in TAU22, some cities appear only in the evaluate split


# Sound events shared by the scenes: each scene is a mixture of the same kinds in its own
# proportions (expected events per second), so similar scenes (bus / tram / metro, airport /
# shopping mall / metro station, park / public square / street) are confused as in TAU22.
SCENE_EVENTS = {
    "airport": {"speech": 3.0, "footsteps": 1.5, "chime": 0.4, "music": 0.3, "engine": 0.3},
    "bus": {"engine": 1.2, "speech": 0.8, "squeal": 0.3, "traffic": 0.6, "chime": 0.2},
    "metro": {"clatter": 1.2, "engine": 0.5, "squeal": 0.6, "speech": 0.6, "chime": 0.2},
    "metro_station": {"speech": 2.0, "footsteps": 1.5, "clatter": 0.4, "squeal": 0.4, "chime": 0.5},
    "park": {"birds": 2.0, "wind": 0.8, "speech": 0.4, "footsteps": 0.4, "traffic": 0.2},
    "public_square": {"speech": 1.5, "footsteps": 1.0, "birds": 0.6, "traffic": 0.6, "music": 0.2},
    "shopping_mall": {"speech": 2.5, "music": 0.8, "footsteps": 1.5, "chime": 0.2},
    "street_pedestrian": {"footsteps": 2.0, "speech": 1.2, "traffic": 0.8, "birds": 0.3},
    "street_traffic": {"traffic": 2.5, "engine": 0.8, "squeal": 0.2, "wind": 0.3},
    "tram": {"clatter": 0.7, "engine": 0.6, "squeal": 0.5, "speech": 0.8, "traffic": 0.3},
}
# Background texture per scene: spectral slope, corner (Hz) and reverberation decay (s).
SCENE_BACKGROUND = {
    "airport": (0.9, 400, 0.6),
    "bus": (1.5, 150, 0.15),
    "metro": (1.4, 200, 0.2),
    "metro_station": (1.0, 350, 0.8),
    "park": (0.7, 900, 0.05),
    "public_square": (0.9, 500, 0.1),
    "shopping_mall": (0.9, 400, 0.7),
    "street_pedestrian": (0.9, 450, 0.1),
    "street_traffic": (1.2, 250, 0.1),
    "tram": (1.4, 180, 0.2),
}


def _location_mood(label, city, location):
    """What a recording place adds to its scene, the same for every clip made there: event
    rates scaled up to 2x or down to 0.5x, a tilted background, a longer or shorter decay."""
    rng = np.random.default_rng(zlib.crc32(f"{CLASSES[label]}|{city}|{location}".encode()))
    return {
        "rates": np.exp(rng.normal(0, 0.45, size=len(EVENT_KINDS))),
        "slope": rng.normal(0, 0.15),
        "decay": np.exp(rng.normal(0, 0.3)),
    }


def _device_responses():
    """Per device: (frequency response, noise floor, drive). Seen devices colour the sound by
    up to about +-8 dB; the unseen s4-s6 by more, with resonances, a lower band limit and
    (s5, s6) some saturation, so that a model that learnt the seen devices' colourings loses
    accuracy on them, as on TAU22."""
    rng = np.random.default_rng(7)
    freqs = np.fft.rfftfreq(FILE_RATE, 1 / FILE_RATE)
    responses = {}
    for device in DEVICES:
        unseen = device in UNSEEN_DEVICES
        if device == "a":
            gain_db, cutoff, floor, drive = np.zeros_like(freqs), 20000.0, 0.003, 0.0
        else:
            anchors = np.geomspace(20, 22050, 10)
            spread = 14 if unseen else 8
            gain_db = np.interp(np.log(freqs + 1), np.log(anchors), rng.uniform(-1, 1, 10) * spread)
            if unseen:
                for centre in rng.uniform(np.log(800), np.log(6000), 2):
                    gain_db += (
                        rng.choice([-1, 1])
                        * 9
                        * np.exp(-((np.log(freqs + 1) - centre) ** 2) / 0.02)
                    )
            cutoff = rng.uniform(3500, 7000) if unseen else rng.uniform(6000, 16000)
            floor = rng.uniform(0.04, 0.12) if unseen else rng.uniform(0.01, 0.06)
            drive = (0.0 if device == "s4" else rng.uniform(4, 8)) if unseen else 0.0
        lowpass = 1 / np.sqrt(1 + (freqs / cutoff) ** 8)
        highpass = (
            1 / np.sqrt(1 + (rng.uniform(60, 250) / (freqs + 1)) ** 4) if device != "a" else 1
        )
        responses[device] = (10 ** (gain_db / 20) * lowpass * highpass, floor, drive)
    return responses


def _coloured_noise(rng, slope, corner, n=FILE_RATE):
    freqs = np.fft.rfftfreq(n, 1 / FILE_RATE)
    spectrum = rng.normal(size=freqs.size) + 1j * rng.normal(size=freqs.size)
    spectrum *= (1 + freqs / corner) ** (-slope)
    noise = np.fft.irfft(spectrum, n=n)
    return noise / (np.std(noise) + 1e-12)


def _bandpass(signal, low, high):
    freqs = np.fft.rfftfreq(len(signal), 1 / FILE_RATE)
    mask = (freqs >= low) & (freqs <= high)
    return np.fft.irfft(np.fft.rfft(signal) * mask, n=len(signal))


def _envelope(n, attack, release):
    t = np.arange(n) / FILE_RATE
    return (1 - np.exp(-t / attack)) * np.exp(-t / release)


def _event(kind, rng):
    """One sound event of `kind` (a short 44.1 kHz signal, unit RMS)."""
    seconds = {
        "speech": 0.5,
        "footsteps": 0.08,
        "engine": 0.9,
        "traffic": 0.9,
        "birds": 0.15,
        "chime": 0.7,
        "squeal": 0.6,
        "wind": 0.9,
        "music": 0.8,
        "clatter": 0.12,
    }[kind]
    n = int(FILE_RATE * seconds * rng.uniform(0.7, 1.3))
    t = np.arange(n) / FILE_RATE
    if kind == "speech":  # voiced syllables: a pitch with harmonics through two formants
        f0 = rng.uniform(95, 250) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / FILE_RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
        sound = _bandpass(voiced, rng.uniform(250, 500), rng.uniform(2500, 3800))
        sound *= 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(3.5, 6) * t) ** 2
    elif kind == "footsteps" or kind == "clatter":
        sound = rng.normal(size=n) * _envelope(n, 0.001, 0.01 if kind == "footsteps" else 0.025)
        sound = _bandpass(sound, 40, 2500 if kind == "footsteps" else 6000)
    elif kind == "engine":  # a low hum with harmonics and a slow wobble
        f0 = rng.uniform(28, 90) * (1 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.3, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / FILE_RATE
        sound = sum(np.sin(k * phase) * rng.uniform(0.3, 1) / k for k in range(1, 12))
        sound += 0.5 * _bandpass(rng.normal(size=n), 30, 400)
    elif kind == "traffic":  # a pass-by: low-passed noise that swells and fades
        sound = _bandpass(rng.normal(size=n), 30, rng.uniform(1200, 3500))
        sound *= np.hanning(n) ** 2
    elif kind == "birds":  # a chirp sweeping 2-7 kHz
        f = np.linspace(rng.uniform(2000, 5000), rng.uniform(3000, 7000), n)
        sound = np.sin(2 * np.pi * np.cumsum(f) / FILE_RATE) * np.hanning(n)
    elif kind == "chime":  # two tones of an announcement signal
        f1 = rng.uniform(450, 1100)
        sound = (np.sin(2 * np.pi * f1 * t) + 0.6 * np.sin(2 * np.pi * f1 * 1.26 * t)) * np.exp(
            -t / 0.25
        )
    elif kind == "squeal":  # brakes or wheels: a high tone with vibrato
        f = rng.uniform(1800, 5500) * (1 + 0.01 * np.sin(2 * np.pi * 7 * t))
        sound = np.sin(2 * np.pi * np.cumsum(f) / FILE_RATE) * np.hanning(n)
    elif kind == "wind":
        sound = _bandpass(rng.normal(size=n), 80, 1500) * (
            1 + np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
        )
    else:  # music: a chord on a beat
        root = rng.uniform(110, 330)
        sound = sum(np.sin(2 * np.pi * root * r * t) for r in (1, 1.25, 1.5, 2))
        sound *= 0.4 + 0.6 * (np.sin(2 * np.pi * rng.uniform(1.5, 2.5) * t) > 0)
    return sound / (np.std(sound) + 1e-12)


EVENT_KINDS = (
    "speech",
    "footsteps",
    "engine",
    "traffic",
    "birds",
    "chime",
    "squeal",
    "wind",
    "music",
    "clatter",
)


def scene_clip(label, rng, mood=None):
    """One second of scene `label` at 44.1 kHz, before any device colouring: its background,
    its sound events at Poisson times and levels, and the place's reverberation. `mood`: what
    the recording place adds (`_location_mood`)."""
    scene = CLASSES[label]
    mood = mood or {"rates": np.ones(len(EVENT_KINDS)), "slope": 0.0, "decay": 1.0}
    slope, corner, decay = SCENE_BACKGROUND[scene]
    clip = _coloured_noise(rng, slope + mood["slope"], corner * rng.uniform(0.8, 1.25))
    clip *= 10 ** (rng.uniform(-4, 4) / 20)
    for index, kind in enumerate(EVENT_KINDS):
        rate = SCENE_EVENTS[scene].get(kind, 0.05) * mood["rates"][index]
        for _ in range(rng.poisson(rate)):
            sound = _event(kind, rng) * 10 ** (rng.uniform(-6, 6) / 20) * 1.6
            start = int(rng.integers(-len(sound) // 2, FILE_RATE))
            lo, hi = max(start, 0), min(start + len(sound), FILE_RATE)
            clip[lo:hi] += sound[lo - start : hi - start]
    tail = int(FILE_RATE * 0.5)
    decay *= mood["decay"]  # seconds to -60 dB; the reverberant energy grows with it
    response = rng.normal(size=tail) * np.exp(-np.arange(tail) / (FILE_RATE * decay / 6.9))
    response *= np.sqrt(min(decay, 1.0)) / np.linalg.norm(response)
    response[0] = 1.0
    clip = np.fft.irfft(np.fft.rfft(clip, 2 * FILE_RATE) * np.fft.rfft(response, 2 * FILE_RATE))[
        :FILE_RATE
    ]
    level = 10 ** (rng.uniform(-38, -22) / 20)
    return clip / (np.std(clip) + 1e-12) * level


def record_on_device(clip, device, rng, responses):
    response, floor, drive = responses[device]
    coloured = np.fft.irfft(np.fft.rfft(clip) * response, n=len(clip))
    if drive:  # a saturating preamplifier
        peak = np.max(np.abs(coloured)) + 1e-12
        coloured = np.tanh(drive * coloured / peak) / np.tanh(drive) * peak
    coloured += rng.normal(size=len(clip)) * floor * np.std(coloured)  # its noise floor
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


def segment_of(filename):
    """The recording segment of a TAU22-style clip name (`scene-city-location-segment-clip-
    device`): every 1-second clip and every device's version of it share it."""
    return "-".join(Path(filename).stem.split("-")[:4])


def nested_subsets(rows, rng):
    """{split5..split100: rows} as DCASE24 builds its subsets: whole recording segments,
    the same share of each class's segments (at least one, so every class is in every
    subset), each subset a part of the larger ones. `rows`: (filename, scene label)."""
    segments = {}  # class -> its segments, in a fixed random order
    for filename, label in rows:
        segments.setdefault(label, {}).setdefault(segment_of(filename), None)
    order = {label: rng.permutation(list(found)) for label, found in segments.items()}
    subsets = {}
    for subset in SUBSETS:
        share = int(subset.removeprefix("split")) / 100
        kept = {
            segment
            for found in order.values()
            for segment in found[: max(1, math.ceil(share * len(found) - 1e-9))]
        }
        subsets[subset] = [row for row in rows if segment_of(row[0]) in kept]
    return subsets


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
    responses = _device_responses()
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
        mood = _location_mood(label, city, location)
        clip = record_on_device(scene_clip(label, rng, mood), device, rng, responses)
        soundfile.write(out / name, clip, FILE_RATE, subtype="PCM_24")
        meta.append((name, CLASSES[label], f"{city}-{location}", device))
        splits[split].append((name, CLASSES[label]))
    _write_tsv(out / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta)
    setup = out / "evaluation_setup"
    _write_tsv(setup / "fold1_train.csv", ["filename", "scene_label"], splits["train"])
    _write_tsv(setup / "fold1_evaluate.csv", ["filename", "scene_label"], splits["evaluate"])
    _write_tsv(setup / "fold1_test.csv", ["filename"], [(n,) for n, _ in splits["evaluate"]])
    # One draw from `rng` seeds the subsets' own generator: the impulse responses below do
    # not depend on how many numbers the subsets take.
    subsets_rng = np.random.default_rng(rng.permutation(len(splits["train"])))
    for subset, rows in nested_subsets(splits["train"], subsets_rng).items():
        _write_tsv(out / "split_setup" / f"{subset}.csv", ["filename", "scene_label"], rows)
    ir_folder = out / "impulse_responses"
    ir_folder.mkdir(exist_ok=True)
    for i in range(impulse_responses):
        rate = 48000 if i % 2 else FILE_RATE
        soundfile.write(ir_folder / f"ir_{i:02d}.wav", _impulse_response(rng, rate), rate)
    return len(plan)
