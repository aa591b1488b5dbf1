"""Classifying one's own audio: asc_keras.inference and tools/predict.py, on the models of the
tiny run (`tiny_recipe`) and on files in other formats, rates and channel counts."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from asc_keras.data.tau22 import CLASSES
from asc_keras.inference import device_of, get_model_for_device, load_model, windows_of
from tests.helpers import ROOT, call_tool


def test_windows_cover_the_clip_and_a_short_clip_is_padded():
    clip = np.arange(25, dtype="float32")
    windows = windows_of(clip, 10, 10)
    assert [w[0] for w in windows] == [0, 10, 15]  # the last one ends at the clip's end
    assert len(windows_of(clip, 10, 5)) == 4 and len(windows_of(clip[:10], 10, 10)) == 1
    short = windows_of(clip[:4], 10, 10)
    assert short.shape == (1, 10) and short[0, 4:].tolist() == [0] * 6


def test_device_ids_come_from_tau22_names_only():
    assert device_of("audio/bus-lyon-1-2-0-s4.wav") == "s4"
    assert device_of("my-recording.flac") == "unknown"
    assert device_of("street-a.ogg") == "a"


def read_rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file, delimiter="\t"))


@pytest.fixture(scope="module")
def inputs(synthetic_root, tmp_path_factory):
    """A folder of audio as users have it, and a DCASE evaluation-set layout."""
    folder = tmp_path_factory.mktemp("recordings")
    clips = sorted((synthetic_root / "audio").glob("*.wav"))[:2]
    for clip in clips:
        shutil.copy(clip, folder)
    rng = np.random.default_rng(0)
    (folder / "more").mkdir()
    stereo = rng.normal(0, 0.1, (8000, 2)).astype("float32")
    soundfile.write(folder / "more" / "8 kHz stereo.wav", stereo, 8000)
    long = rng.normal(0, 0.1, 44100 * 10).astype("float32")
    soundfile.write(folder / "more" / "ten seconds.flac", long, 44100)
    soundfile.write(folder / "short.ogg", rng.normal(0, 0.1, 4800).astype("float32"), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (folder / "notes.txt.bak").write_text("not audio: skipped by the folder search")
    evaluation = tmp_path_factory.mktemp("eval-set")
    (evaluation / "audio").mkdir()
    (evaluation / "evaluation_setup").mkdir()
    for i, clip in enumerate(clips):
        shutil.copy(clip, evaluation / "audio" / f"{i}.wav")
    (evaluation / "evaluation_setup" / "fold1_test.csv").write_text(
        "filename\naudio/0.wav\naudio/1.wav\n"
    )
    return {"folder": folder, "clips": clips, "eval": evaluation}


def check_submission(path):
    """The DCASE Task 1 output format: tab-separated, a header `filename`, `scene_label`, then
    the ten classes in alphabetical order; a known label and probabilities in [0, 1] summing
    to 1 on every row. Returns the rows."""
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    assert header == ["filename", "scene_label", *sorted(CLASSES)]
    rows = []
    for line in lines[1:]:
        cells = line.split("\t")
        assert len(cells) == len(header), line
        probabilities = np.array([float(c) for c in cells[2:]])
        assert np.all((0 <= probabilities) & (probabilities <= 1))
        assert probabilities.sum() == pytest.approx(1, abs=1e-5)
        assert cells[1] == header[2 + int(probabilities.argmax())]
        rows.append(dict(zip(header, cells)))
    return rows


def run_predict(*args):
    """tools/predict.py ARGS in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "predict.py"), *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_predict_writes_a_dcase_submission_and_reports_unreadable_files(
    tiny_recipe, inputs, tmp_path
):
    run = tiny_recipe["whole"]
    out = tmp_path / "scenes.csv"
    done = run_predict(run / "quantized" / "model_int8.tflite", inputs["folder"], "-o", out)
    assert done.returncode == 1, done.stderr  # one file could not be read
    assert "cannot classify" in done.stderr and "broken.wav" in done.stderr
    assert "5 clips (14 windows) classified" in done.stdout  # 10 s -> 10 windows
    rows = check_submission(out)
    assert sorted(r["filename"] for r in rows) == sorted(
        str(inputs["folder"] / name)
        for name in (*[c.name for c in inputs["clips"]], "short.ogg", "more/8 kHz stereo.wav",
                     "more/ten seconds.flac")
    )  # fmt: skip
    errors = read_rows(tmp_path / "scenes.csv.errors.tsv")
    assert [e["path"] for e in errors] == [str(inputs["folder"] / "broken.wav")]
    assert "cannot be decoded" in errors[0]["reason"]

    # A DCASE evaluation set by its list: names as listed, all readable, exit status 0.
    listed = call_tool(
        "predict",
        run / "quantized" / "model_int8.tflite",
        inputs["eval"] / "evaluation_setup" / "fold1_test.csv",
        "-o",
        tmp_path / "eval.csv",
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["filename"] for r in read_rows(tmp_path / "eval.csv")] == [
        "audio/0.wav",
        "audio/1.wav",
    ]
    assert not (tmp_path / "eval.csv.errors.tsv").exists()

    # Clear errors: nothing to classify; a config whose front end the model does not take.
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = call_tool("predict", run / "student" / "last.keras", empty, "-o", tmp_path / "x.csv")
    assert nothing.returncode == 2 and "no audio files in" in nothing.stderr
    other = tmp_path / "other.yaml"
    other.write_text((run / "config.yaml").read_text().replace("n_mels: 128", "n_mels: 256"))
    model = run / "student" / "last.keras"
    wrong = call_tool(
        "predict", model, inputs["folder"], "-o", tmp_path / "y.csv", "--config", other
    )
    assert wrong.returncode == 2 and "takes inputs (128, 50, 1)" in wrong.stderr
    assert "(256, 50, 1)" in wrong.stderr


@pytest.mark.slow
def test_keras_students_with_and_without_the_front_end_agree(tiny_recipe, inputs, tmp_path):
    import keras

    from asc_keras import with_frontend
    from asc_keras.config import load_config
    from asc_keras.inference import predict
    from tools.predict import main

    run = tiny_recipe["whole"]
    config = load_config(run / "config.yaml")
    student = keras.saving.load_model(run / "student" / "last.keras")
    waveform_model = tmp_path / "waveform.keras"
    with_frontend(student, config.frontend).save(waveform_model)

    assert main([str(run / "student" / "last.keras"), str(inputs["folder"]),
                 "-o", str(tmp_path / "a.json"), "--per-window"]) == 1  # fmt: skip
    per_window = json.loads((tmp_path / "a.json").read_text())
    assert per_window["classes"] == list(CLASSES)
    assert len(per_window["rows"]) == 14  # one row per window

    models = load_model(
        {"general": run / "student" / "last.keras", "s4": waveform_model}, run / "config.yaml"
    )
    assert get_model_for_device(models, "s4").waveform_in
    assert not get_model_for_device(models, "unknown").waveform_in
    files = [*inputs["clips"], inputs["folder"] / "more" / "ten seconds.flac"]
    spectrogram, errors, _ = predict(files, ["unknown"] * 3, models)
    waveform, _, _ = predict(files, ["s4"] * 3, models)
    assert errors == []
    for a, b in zip(spectrogram, waveform):
        np.testing.assert_allclose(a.windows, b.windows, atol=1e-4)
        assert a.probabilities.sum() == pytest.approx(1, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["student/last.keras", "quantized/model_int8.tflite"])
def test_predict_gives_each_clip_the_class_evaluate_gives(
    tiny_recipe, tiny_evaluated, synthetic_root, model, tmp_path
):
    run = tiny_recipe["whole"]
    evaluated, report = tiny_evaluated(model)
    assert evaluated.returncode == 0, evaluated.stderr
    expected = report["predicted"]
    listed = synthetic_root / "evaluation_setup" / "fold1_evaluate.csv"
    done = call_tool("predict", run / model, listed, "-o", tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    got = {r["filename"]: r["scene_label"] for r in check_submission(tmp_path / "out.csv")}
    assert len(got) == len(expected) == 90 and got == expected


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch", "0"], "argument --batch: expected a number above 0, got '0'"),
        (["--batch", "-2"], "argument --batch: expected a number above 0, got '-2'"),
        (["--hop", "0"], "argument --hop: expected a number above 0, got '0'"),
        (["--hop", "nan"], "argument --hop: expected a number above 0, got 'nan'"),
    ],
)
def test_predict_refuses_a_bad_flag_naming_it(tmp_path, capsys, flags, message):
    from asc_keras.commands.predict import main

    with pytest.raises(SystemExit) as exit_:
        main(["model.keras", str(tmp_path), "-o", str(tmp_path / "out.csv"), *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_checks_its_output_before_any_work(tmp_path):
    from asc_keras.commands.predict import main
    from asc_keras.errors import UserError

    listed = tmp_path / "fold1_test.csv"
    listed.write_text("filename\naudio/x.wav\n")
    before = listed.read_bytes()
    with pytest.raises(UserError, match=r"-o '.*fold1_test.csv' is one of the inputs"):
        main(["missing.keras", str(listed), "-o", str(listed)])
    assert listed.read_bytes() == before
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    with pytest.raises(UserError, match=r"-o '.*blocked/out.csv' cannot be written"):
        main(["missing.keras", str(listed), "-o", str(blocked / "out.csv")])
    with pytest.raises(UserError, match=r"-o '.*' is a folder; expected an output file"):
        main(["missing.keras", str(listed), "-o", str(tmp_path)])


def test_a_damaged_keras_file_is_named_as_damaged(tmp_path, synthetic_config):
    from asc_keras.cli import load_keras
    from asc_keras.errors import UserError

    damaged = tmp_path / "student.keras"
    damaged.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match=r"student.keras: not a .keras model \(not a zip archive"):
        load_keras(damaged)


def test_a_list_that_is_not_utf8_names_the_file_and_byte(tmp_path):
    from asc_keras.commands.predict import main
    from asc_keras.errors import UserError

    listed = tmp_path / "fold1_test.csv"
    listed.write_bytes(b"filename\naudio/caf\xe9.wav\n")
    with pytest.raises(UserError, match=r"fold1_test.csv: not UTF-8 text: byte 0xe9 at offset 18"):
        main(["model.keras", str(listed), "-o", str(tmp_path / "out.csv")])
