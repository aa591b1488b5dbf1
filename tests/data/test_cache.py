import json

import numpy as np
import pytest

from asc_keras.audio import load_audio
from asc_keras.data import cache as cache_module
from asc_keras.data.cache import open_cache, prepare_cache
from asc_keras.data.tau22 import DatasetError


def test_cache_holds_the_decoded_resampled_clips(synthetic_root, tmp_path):
    cache = prepare_cache(synthetic_root, "evaluate", tmp_path, progress=False)
    assert cache.waveforms.shape == (len(cache), 32000) and cache.sample_rate == 32000
    first = load_audio(synthetic_root / cache.records[0].filename)
    np.testing.assert_allclose(cache.waveforms[0], first, atol=1e-3, rtol=1e-3)  # float16
    energies = np.sum(np.square(cache.waveforms, dtype=np.float64), axis=1)
    assert cache.mean_energy == pytest.approx(energies.mean())


def test_interrupted_preparation_resumes_and_is_never_read_half_written(
    synthetic_root, tmp_path, monkeypatch
):
    monkeypatch.setattr(cache_module, "CHUNK", 16)
    real_load = cache_module._load_chunk
    calls = []

    def load_then_die(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_load(*args)

    monkeypatch.setattr(cache_module, "_load_chunk", load_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(synthetic_root, "evaluate", tmp_path, progress=False)
    folder = cache_module.cache_directory(tmp_path, "evaluate", 32000)
    assert json.loads((folder / "progress.json").read_text())["done"] == 32
    with pytest.raises(DatasetError, match="not a finished waveform cache"):
        open_cache(folder)

    monkeypatch.setattr(cache_module, "_load_chunk", real_load)
    resumed = prepare_cache(synthetic_root, "evaluate", tmp_path, progress=False)
    fresh = prepare_cache(synthetic_root, "evaluate", tmp_path / "fresh", progress=False)
    np.testing.assert_array_equal(resumed.waveforms, fresh.waveforms)


def test_missing_audio_files_are_counted_and_named(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("asc_keras_cache"))
    victims = sorted((root / "audio").glob("*-s5.wav"))[:2]
    for path in victims:
        path.unlink()
    with pytest.raises(DatasetError, match=r"2 of \d+ audio files .* missing.*-s5.wav"):
        prepare_cache(root, "evaluate", tmp_path / "cache", progress=False)


def test_a_changed_wav_makes_the_cache_stale_and_names_the_file(synthetic_root, tmp_path, capsys):
    import os
    import shutil

    import soundfile

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root, ignore=shutil.ignore_patterns("asc_keras_cache"))
    before = prepare_cache(root, "evaluate", tmp_path / "cache", progress=False)
    index = 3
    victim = root / before.records[index].filename
    stat = victim.stat()
    soundfile.write(victim, np.full(44100, 0.5), 44100, subtype="PCM_24")  # same size
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert victim.stat().st_size == stat.st_size
    capsys.readouterr()
    after = prepare_cache(root, "evaluate", tmp_path / "cache", progress=False)
    message = capsys.readouterr().out
    assert "is stale (1 changed, e.g. ['" + before.records[index].filename in message
    np.testing.assert_allclose(after.waveforms[index], load_audio(victim), atol=1e-3)
    others = [i for i in range(len(after)) if i != index]
    np.testing.assert_array_equal(after.waveforms[others], before.waveforms[others])
    capsys.readouterr()
    prepare_cache(root, "evaluate", tmp_path / "cache", progress=False)  # unchanged: reused
    assert "stale" not in capsys.readouterr().out


def test_an_unwritable_cache_folder_is_one_clear_error(synthetic_root, tmp_path):
    from asc_keras.errors import UserError

    (tmp_path / "a-file").write_text("in the way")
    with pytest.raises(
        UserError, match=r"cannot write the waveform cache .*a-file.*data.cache_dir"
    ):
        prepare_cache(synthetic_root, "evaluate", tmp_path / "a-file" / "cache", progress=False)
