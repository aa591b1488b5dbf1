"""DCASE 2025 device models: the tiny recipe's device model for device b (conftest.py), the
system report, a run folder as the model of tools/predict.py and tools/complexity.py, and
the errors before any work."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from asc_keras.complexity import RULES, count_tflite, system_complexity
from asc_keras.config import ConfigError, config_from_dict, save_config
from asc_keras.device_models import check_device_clips
from asc_keras.errors import UserError
from asc_keras.inference import system_paths
from tests.helpers import call_tool, error_line


def _summary(run):
    return json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_the_system_classifies_each_listed_device_with_its_own_model(tiny_recipe):
    run = tiny_recipe["whole"]
    summary = _summary(run)["device_models"]
    assert summary["devices"] == ["b"] and summary["general"] == "student-no-teacher"
    general_int8 = _summary(run)["quantized"]["accuracy"]["int8 QAT"]
    device = json.loads((run / "device-models/b/quantized/summary.json").read_text())
    float_b = json.loads((run / "device-models/b/report.json").read_text())
    assert set(float_b["devices"]) == set(device["reports"]["int8 QAT"]["devices"]) == {"b"}
    accuracy = summary["accuracy"]
    for kind, device_model in (("float", float_b), ("int8", device["reports"]["int8 QAT"])):
        general = accuracy[f"general model, {kind}"]
        system = accuracy[f"with device models, {kind}"]
        assert system["devices"]["b"] == device_model["devices"]["b"]
        others = {d: a for d, a in general["devices"].items() if d != "b"}
        assert {d: system["devices"][d] for d in others} == others
        # Every device has as many evaluation clips: overall is the mean over devices.
        assert system["accuracy"] == pytest.approx(np.mean(list(system["devices"].values())))
    assert accuracy["general model, int8"]["accuracy"] == pytest.approx(general_int8)
    assert "DCASE 2025 system on evaluate" in tiny_recipe["stdout"]


@pytest.mark.slow
def test_predict_on_a_run_folder_serves_each_device_from_its_model(
    tiny_recipe, synthetic_root, tmp_path, capsys
):
    run = tiny_recipe["whole"]
    predicted = predicted_accuracies(run, synthetic_root, tmp_path / "scenes.csv")
    printed = capsys.readouterr().out
    assert f"device b: 10 clips, its device model {run}/device-models/b/quantized/" in printed
    assert f"device s4: 10 clips, the general model {run}/quantized/model_int8.tflite" in printed
    system = _summary(run)["device_models"]["accuracy"]["with device models, int8"]
    assert_within_one_clip(predicted, system["devices"])


def predicted_accuracies(run, synthetic_root, out):
    """Accuracy per device of `tools/predict.py RUN_FOLDER` (in-process: faster) on the
    synthetic evaluate split: the package's front end and models."""
    from asc_keras.commands import predict

    listing = synthetic_root / "evaluation_setup" / "fold1_evaluate.csv"
    assert predict.main([str(run), str(listing), "-o", str(out)]) == 0
    with open(listing) as f:
        truth = {r["filename"]: r["scene_label"] for r in csv.DictReader(f, delimiter="\t")}
    with open(out) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    per_device = {}
    for row in rows:
        device = row["filename"].rsplit("-", 1)[1].removesuffix(".wav")
        per_device.setdefault(device, []).append(truth[row["filename"]] == row["scene_label"])
    return {d: float(np.mean(c)) for d, c in per_device.items()}


def assert_within_one_clip(predicted, reported, clips=10):
    """The run's report computes its log-mel with TensorFlow, a run folder with the package's
    TFLite front end: they agree to about 1e-6, which can move a clip whose two best int8
    classes are one output step apart (docs/dcase2025.md). Per device, at most one clip."""
    assert set(predicted) == set(reported)
    for device, accuracy in predicted.items():
        assert abs(accuracy - reported[device]) <= 1 / clips + 1e-9, (device, predicted, reported)


@pytest.mark.slow
def test_complexity_checks_every_model_of_a_run_folder(tiny_recipe, capsys):
    from asc_keras.commands import complexity

    run = tiny_recipe["whole"]
    assert complexity.main([str(run), "--json"]) == 0  # the tool, in-process: int8
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["general", "b"]
    for row, model in zip(rows, ("quantized", "device-models/b/quantized")):
        stored = count_tflite((run / model / "model_int8.tflite").read_bytes())
        assert row["param_bytes"] == stored["param_bytes"] and row["within_limits"]
        assert 1e6 < row["macs"] < RULES["dcase2025"].max_macs
    floats = system_complexity(run, "float")
    assert [r["param_bytes"] for r in floats] == [4 * r["params"] for r in floats]
    assert [r["macs"] for r in floats] == [r["macs"] for r in rows]


def test_rules_name_each_broken_limit():
    rules = RULES["dcase2025"]
    assert rules.check(128_000, 30_000_000) == []
    assert rules.check(128_001, 31_000_000) == [
        "128001 parameter bytes > 128000",
        "31.00 M MACs > 30 M",
    ]


def test_a_device_with_fewer_clips_than_a_batch_is_refused_before_any_work(synthetic_config):
    import dataclasses

    from asc_keras.config import DeviceModelsConfig

    config = dataclasses.replace(
        synthetic_config, device_models=DeviceModelsConfig(devices=["a", "b"], batch_size=32)
    )
    with pytest.raises(ConfigError) as error:
        check_device_clips(config, "run.yaml")
    assert str(error.value).startswith(
        "run.yaml: device_models.devices lists 'b', which has 20 clips in the training split "
        "'train'; a device model needs at least one batch (device_models.batch_size, now 32)"
    )


def test_device_models_name_training_devices_once():
    for devices, expected in (
        (["s4"], "lists 's4'; expected training devices among"),
        (["b", "b"], "lists 'b' twice"),
    ):
        with pytest.raises(ConfigError, match=expected):
            config_from_dict({"device_models": {"devices": devices}}, "run.yaml")


def test_a_run_folder_without_a_device_models_int8_file_names_it(tmp_path, synthetic_root):
    save_config(config_from_dict({"device_models": {"devices": ["c"]}}), tmp_path / "config.yaml")
    (tmp_path / "quantized").mkdir()
    (tmp_path / "quantized" / "model_int8.tflite").write_bytes(b"")
    with pytest.raises(UserError) as error:
        system_paths(tmp_path)
    assert str(error.value) == (
        f"{tmp_path}: no int8 model device-models/c/quantized/model_int8.tflite: the run has "
        f"not finished those stages (rerun it with --resume) or does not quantize (pass --float)"
    )
    listing = synthetic_root / "evaluation_setup" / "fold1_evaluate.csv"
    done = call_tool("predict", tmp_path, listing, "-o", tmp_path / "out.csv")
    assert done.returncode == 2
    assert error_line(done) == f"error: {error.value}"


@pytest.mark.slow
def test_the_package_installs_alone_and_classifies_as_predict_does(
    tiny_recipe, synthetic_root, tmp_path, capsys
):
    import os
    import re
    import subprocess
    import sys
    import sysconfig

    run, out = tiny_recipe["whole"], tmp_path / "submission"
    name = "Tester_ASC_task1"
    from asc_keras.commands import package

    arguments = [run, "-o", out, "--name", name, "--index", "2", "--evaluation-set", synthetic_root]
    assert package.main([str(a) for a in arguments]) == 0  # the tool, in-process
    printed = capsys.readouterr().out
    assert f"system 2: 90 evaluation clips classified, wrote {out}/{name}_2.output.csv" in printed
    predicted = predicted_accuracies(run, synthetic_root, tmp_path / "scenes.csv")
    check_meta_file(out / f"{name}_2.meta.yaml", run, printed, predicted)
    project = out / name
    dependencies = re.search(r"dependencies = (\[.*\])", (project / "pyproject.toml").read_text())
    assert [re.split("[<>=]", d)[0] for d in json.loads(dependencies.group(1))] == [
        "numpy", "soundfile", "soxr", "ai-edge-litert",
    ]  # fmt: skip
    system = json.loads((project / name / "resources/system_2/system.json").read_text())
    assert sorted(system["models"]) == ["b", "general"]
    # A fresh environment: the package itself, its dependencies from this one's site-packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", project]
    subprocess.run(install, check=True, capture_output=True)
    listing = synthetic_root / "evaluation_setup" / "fold1_test.csv"
    script = f"""
import csv, json, sys
from pathlib import Path
from {name} import {name}_2 as api
root = Path({str(synthetic_root)!r})
rows = list(csv.DictReader(open({str(listing)!r}), delimiter="\\t"))
files = [str(root / r["filename"]) for r in rows]
devices = [r["filename"].rsplit("-", 1)[1].removesuffix(".wav") for r in rows]
logits, classes = api.predict(files, devices)
model = api.load_model()
assert api.get_model_for_device(model, "s4") is api.get_model_for_device(model, "unknown")
assert api.get_model_for_device(model, "b") is not api.get_model_for_device(model, "a")
loaded = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "asc_keras")]
print(json.dumps({{"classes": [classes[int(x.argmax())] for x in logits], "loaded": loaded}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert found["loaded"] == []
    with open(out / f"{name}_2.output.csv") as f:
        expected = [row["scene_label"] for row in csv.DictReader(f, delimiter="\t")]
    assert found["classes"] == expected


# The blocks and fields DCASE Task 1 meta files have carried since 2020 (the challenge's
# submission validator), and those asc_keras adds for device models and distillation.
META_FIELDS = {
    "submission": ["label", "name", "abbreviation", "authors"],
    "system": ["description", "complexity", "external_datasets", "source_code"],
    "system.description": [
        "input_sampling_rate", "acoustic_features", "embeddings", "data_augmentation",
        "machine_learning_method", "ensemble_method_subsystem_count", "decision_making",
        "external_data_usage", "complexity_management", "knowledge_distillation",
        "device_specific_models", "training_split",
    ],
    "system.complexity": ["total_parameters", "total_model_size", "macs_per_model", "models"],
    "results.development_dataset": ["overall", "class_wise", "device_wise"],
}  # fmt: skip


def check_meta_file(path, run, printed, predicted):
    import yaml

    meta = yaml.safe_load(path.read_text())
    for block, fields in META_FIELDS.items():
        found = meta
        for key in block.split("."):
            found = found[key]
        assert set(fields) <= set(found), (block, set(fields) - set(found))
    author = meta["submission"]["authors"][0]
    assert set(author) >= {"lastname", "firstname", "email", "affiliation", "corresponding"}
    assert meta["submission"]["label"] == "Tester_ASC_task1_2" and author["lastname"] == "Tester"
    assert meta["system"]["description"]["input_sampling_rate"] == "32kHz"
    assert "128 bins" in meta["system"]["description"]["acoustic_features"]
    models = meta["system"]["complexity"]["models"]
    assert sorted(models) == ["b", "general"]
    assert (
        models["b"]["parameter_bytes"]
        == count_tflite((run / "device-models/b/quantized/model_int8.tflite").read_bytes())[
            "param_bytes"
        ]
    )
    # The development results: the evaluate split through the packaged models, as
    # tools/predict.py classifies it from the run folder; the run's own report within a clip.
    results = meta["results"]["development_dataset"]
    device_wise = {d: r["accuracy"] / 100 for d, r in results["device_wise"].items()}
    assert device_wise == pytest.approx(predicted, abs=0.00006)
    system = _summary(run)["device_models"]["accuracy"]["with device models, int8"]
    assert_within_one_clip(device_wise, system["devices"])
    class_wise = [r["accuracy"] for r in results["class_wise"].values()]
    assert len(class_wise) == 10
    assert results["overall"]["accuracy"] == pytest.approx(np.mean(class_wise), abs=0.006)
    left = printed.split("fill in: ", 1)[1].splitlines()[0].split(", ")
    assert "submission.authors.0.email" in left and "system.source_code" in left
    assert "submission.label" not in left


def test_bad_package_requests_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    from asc_keras.submission.package import check_request

    run = tmp_path / "run"
    save_config(config_from_dict({}), run / "config.yaml")
    for runs, name, index, expected in (
        ([run], "schmid_task1", 1, "--name 'schmid_task1': expected the challenge's label"),
        ([run, run], "Schmid_CPJKU_task1", 4, "--index 4 with 2 run folder(s) gives systems 4..5"),
        ([run], "Schmid_CPJKU_task1", 1, f"{run}: no int8 model quantized/model_int8.tflite"),
    ):
        with pytest.raises(UserError) as error:
            check_request(runs, name, index, "int8")
        assert str(error.value).startswith(expected)
    # The tool checks the request before it writes anything, and says so in one line.
    done = call_tool(
        "package", *runs, "-o", tmp_path / "out", "--name", name, "--index", str(index)
    )
    assert done.returncode == 2 and error_line(done) == f"error: {error.value}"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_package_refuses_models_over_the_limits_and_mixed_class_orders(
    tiny_recipe, tmp_path, monkeypatch
):
    import shutil

    from asc_keras.complexity import Rules
    from asc_keras.submission import package

    run = tiny_recipe["whole"]
    monkeypatch.setitem(package.RULES, "dcase2025", Rules("tight", 1000, 30_000_000))
    with pytest.raises(UserError, match=f"^{run}: model general is over the DCASE 2025 limits: "):
        package.check_request([run], "Schmid_CPJKU_task1", 1, "int8")
    monkeypatch.undo()
    with pytest.raises(UserError, match=f"^{run}: the meta file's development results need its"):
        package.check_request([run], "Schmid_CPJKU_task1", 1, "int8", tmp_path / "no-dataset")
    other = tmp_path / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    text = (other / "config.yaml").read_text()
    (other / "config.yaml").write_text(text.replace("num_classes: 10", "num_classes: 9"))
    with pytest.raises(UserError, match="^the runs give different class orders: "):
        package.check_request([run, other], "Schmid_CPJKU_task1", 1, "int8")
