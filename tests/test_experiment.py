"""tools/experiment.py: the experiment file's checks, the results table, and a tiny grid killed
(kill -9) in the middle and resumed."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asc_keras.config import ConfigError
from asc_keras.experiment import load_experiment, results_markdown, summarize
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


def table_rows(markdown):
    """The cells of every Markdown table row (header and separator rows excluded)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def write_experiment(folder, tables, base=None, seeds=2):
    (folder / "base.yaml").write_text(yaml.safe_dump(base or {"model": {"variant": "sm1"}}))
    path = folder / "grid.yaml"
    spec = {"config": "base.yaml", "seeds": seeds, "tables": tables}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))  # rows in their order
    return path


def test_an_experiment_file_error_names_the_table_row_and_key(tmp_path):
    path = write_experiment(tmp_path, {"T": {"bad row": {"model": {"norm": "layer"}}}})
    with pytest.raises(ConfigError, match=r"grid.yaml: tables.T.bad row.*'model.norm'"):
        load_experiment(path)
    path = write_experiment(tmp_path, {"T": {"r": {"training": {"epoch": 3}}}})
    with pytest.raises(ConfigError, match=r"tables.T.r: unknown key training.'epoch'"):
        load_experiment(path)
    path = write_experiment(tmp_path, {"T": {"r": {}}}, seeds=0)
    with pytest.raises(ConfigError, match="'seeds' has value 0"):
        load_experiment(path)
    (tmp_path / "typo.yaml").write_text("config: base.yaml\ntable: {}\n")
    with pytest.raises(
        ConfigError,
        match=r"typo.yaml: unknown key 'table'; valid keys here: \['config', 'seeds', 'tables'\]",
    ):
        load_experiment(tmp_path / "typo.yaml")


@pytest.mark.parametrize("value", [None, 3, "off"])
def test_a_row_that_sets_a_section_to_a_value_names_it(tmp_path, value):
    path = write_experiment(tmp_path, {"T": {"r": {"distillation": value}}})
    with pytest.raises(
        ConfigError,
        match=rf"tables.T.r.distillation must be a mapping of config keys, got {value!r}",
    ):
        load_experiment(path)


def test_two_rows_with_one_name_are_refused_with_the_line(tmp_path):
    (tmp_path / "base.yaml").write_text("model: {variant: sm1}\n")
    path = tmp_path / "grid.yaml"
    path.write_text(
        "config: base.yaml\ntables:\n  T:\n    fused: {}\n"
        "    fused: {teachers: {fusion: averaged}}\n"
    )
    with pytest.raises(ConfigError, match=r"grid.yaml, line 5: key 'fused' appears twice"):
        load_experiment(path)


def test_rows_with_the_same_config_share_their_runs(tmp_path):
    path = write_experiment(
        tmp_path,
        {
            "IV": {"none": {"distillation": {"enabled": False}}, "fused": {}},
            "V": {"BN": {"model": {"norm": "batch"}}, "RN": {"model": {"norm": "residual"}}},
        },
    )
    experiment = load_experiment(path, seeds=3)
    folders = {(row.table, row.name): row.folder for row in experiment.rows}
    assert experiment.seeds == 3
    assert folders["IV", "fused"] == folders["V", "RN"]  # residual is the base's norm
    assert len(set(folders.values())) == 3
    # The grid compares the rows itself: no run trains its own comparison student.
    assert not any(row.config.distillation.compare_without_teacher for row in experiment.rows)
    # --table keeps the tables whose titles start so; the runs keep their folders.
    only = load_experiment(path, tables=["V"])
    assert [(row.table, row.folder) for row in only.rows] == [
        ("V", folders["V", "BN"]),
        ("V", folders["V", "RN"]),
    ]
    with pytest.raises(ConfigError, match="no table starts with 'VI'; its tables: 'IV', 'V'"):
        load_experiment(path, tables=["VI"])


def result(table, row, seed, float_overall, int8_overall, seconds=60.0, reference=None):
    groups = {"A": float_overall + 5, "seen": float_overall + 1, "unseen": float_overall - 3}
    return {
        "table": table,
        "row": row,
        "seed": seed,
        "float": {**groups, "overall": float_overall},
        "int8": {**{g: v - 1 for g, v in groups.items()}, "overall": int8_overall},
        "qat_drop": float_overall - int8_overall,
        **({"qat_drop_reference": float_overall - reference} if reference is not None else {}),
        "seconds": seconds,
        "teachers": {"fused": 70.0},
    }


def test_the_table_gives_mean_std_qat_drop_and_time_per_row(tmp_path):
    path = write_experiment(
        tmp_path, {"IV": {"none": {"distillation": {"enabled": False}}, "fused": {}}}, seeds=3
    )
    experiment = load_experiment(path)
    results = [
        result("IV", "none", 0, 60.0, 59.5, 100, reference=59.0),
        result("IV", "none", 1, 62.0, 61.0, 120, reference=62.5),
        result("IV", "none", 2, 64.0, 62.5, 110),
        result("IV", "fused", 0, 66.0, 65.8),
    ]
    table = summarize(experiment, results)
    none, fused = table
    assert none["runs"] == 3 and fused["runs"] == 1
    assert none["float_overall_mean"] == pytest.approx(62.0)
    assert none["float_overall_std"] == pytest.approx(2.0)  # sample standard deviation
    assert none["float_A_mean"] == pytest.approx(67.0)
    assert none["int8_unseen_mean"] == pytest.approx(58.0)
    assert none["qat_drop_mean"] == pytest.approx(1.0)
    assert none["qat_drop_worst"] == pytest.approx(1.5)
    assert none["seconds_per_run"] == pytest.approx(110)
    # Only the runs that report the reference kernels count there.
    assert none["qat_drop_reference_mean"] == pytest.approx(0.25)
    assert none["qat_drop_reference_worst"] == pytest.approx(1.0)
    assert fused["qat_drop_reference_mean"] is None
    assert fused["float_overall_std"] == 0.0
    text = results_markdown(experiment, table, {"teachers": 30, "runs": 400})
    rows = {cells[0]: cells for cells in table_rows(text)}
    assert rows["none"][1:6] == [
        "3/3",
        "67.00 ± 2.00",
        "63.00 ± 2.00",
        "59.00 ± 2.00",
        "62.00 ± 2.00",
    ]
    assert rows["none"][-3:] == ["1.00 / 1.50", "0.25 / 1.00", "1 min 50 s"]
    assert rows["fused"][-3:] == ["0.20 / 0.20", "-", "1 min 0 s"]
    lines = text.splitlines()

    def line_with(*words):
        found = [line for line in lines if all(word in line for word in words)]
        assert len(found) == 1, (words, found)
        return found[0]

    assert re.findall(r"\d+", line_with("incomplete")) == ["4", "6"]
    ranked = line_with("best first")
    assert re.findall(r"(\w+) (\d+\.\d+)", ranked) == [("fused", "66.00"), ("none", "62.00")]
    assert re.findall(r"(\w+) \((\d+\.\d+)\)", line_with("more than 1 point")) == [("none", "1.50")]
    assert re.findall(r"(\w+) (\d+\.\d+) %", line_with("Teachers")) == [("fused", "70.00")]
    assert line_with("Time").count("7 min 10 s") == 1 and "teachers 30 s" in line_with("Time")


def test_rows_with_device_models_get_a_table_per_device(tmp_path):
    path = write_experiment(tmp_path, {"2025": {"devices": {}}}, seeds=2)
    experiment = load_experiment(path)
    results = []
    for seed, b in enumerate((50.0, 54.0)):
        run = result("2025", "devices", seed, 60.0, 59.0)
        run["device_models"] = {
            "general model, int8": {"A": 70.0, "B": 40.0, "unseen": 45.0, "overall": 50.0},
            "with device models, int8": {"A": 72.0, "B": b, "unseen": 45.0, "overall": 52.0},
        }
        results.append(run)
    text = results_markdown(experiment, summarize(experiment, results))
    assert "### devices: device models (accuracy % per device)" in text
    rows = {cells[0]: cells for cells in table_rows(text)}
    assert rows["general model, int8"][1:] == [
        "2/2",
        "70.00 ± 0.00",
        "40.00 ± 0.00",
        "45.00 ± 0.00",
        "50.00 ± 0.00",
    ]
    assert rows["with device models, int8"][3] == "52.00 ± 2.83"  # B: 50 and 54


# What the grid checks (kill, resume, shared runs, the table) does not depend on the input size.
SMALL_FRONTEND = {"n_mels": 64, "hop_length": 1000}


@pytest.mark.slow
def test_a_killed_grid_resumes_where_it_stopped_and_writes_the_table(tmp_path, synthetic_root):
    (tmp_path / "teacher.yaml").write_text(
        yaml.safe_dump(
            {
                "frontend": SMALL_FRONTEND,
                "model": {"architecture": "cp_resnet", "width": 4},
                "training": {"epochs": 1, "batch_size": 16, "warmup_epochs": 0},
                "distillation": {"enabled": False},
            }
        )
    )
    base = {
        "data": {"root": str(synthetic_root), "cache_dir": str(tmp_path / "cache")},
        "augment": {"dir": {"folder": "impulse_responses"}},
        "frontend": SMALL_FRONTEND,
        "model": {"variant": "sm1"},
        "training": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1},
        "teachers": {"train_count": 1, "config": "teacher.yaml"},
        "quantization": {"enabled": False},
    }
    tables = {
        "IV": {"no teacher": {"distillation": {"enabled": False}}, "fused": {}},
        "V": {"RN": {"model": {"norm": "residual"}}},  # the fused row's config: its runs
    }
    path = write_experiment(tmp_path, tables, base=base, seeds=1)
    out = tmp_path / "out"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    command = [sys.executable, str(ROOT / "tools" / "experiment.py"), str(path), "--out", str(out)]
    experiment = load_experiment(path)
    folder = {row.name: out / "runs" / row.folder for row in experiment.rows}
    # Killed while the fused row (the second) trains.
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = folder["fused"] / "seed-0" / "student" / "checkpoints" / "epoch-0001.json"
    assert wait_for(marker, process), process.communicate()[1].decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = folder["no teacher"] / "seed-0" / "summary.json"
    teacher = out / "teachers" / "teacher-0" / "logits.npz"
    before = {path: path.stat().st_mtime_ns for path in (finished, teacher)}
    assert not (folder["fused"] / "seed-0" / "summary.json").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Nothing finished was trained again; the killed run went on from its checkpoint.
    assert {path: path.stat().st_mtime_ns for path in before} == before
    time_spent = json.loads((folder["fused"] / "seed-0" / "experiment-time.json").read_text())
    assert time_spent["attempts"] == 2
    history = (folder["fused"] / "seed-0" / "student" / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]
    assert sorted(p.name for p in out.joinpath("runs").iterdir()) == sorted(
        {row.folder for row in experiment.rows}
    )

    runs = {line["row"]: line for line in csv.DictReader((out / "runs.csv").open())}
    assert sorted(runs) == ["RN", "fused", "no teacher"]
    assert runs["RN"] == {**runs["fused"], "table": "V", "row": "RN"}  # the same run
    lines = {line["row"]: line for line in csv.DictReader((out / "results.csv").open())}
    for row, run in runs.items():
        summary = json.loads((folder[row] / "seed-0" / "summary.json").read_text())
        overall = 100 * summary["reports"]["student"]["accuracy"]
        assert float(run["float_overall"]) == pytest.approx(overall, abs=1e-3)
        assert float(lines[row]["float_overall_mean"]) == pytest.approx(overall, abs=1e-3)
        assert lines[row]["runs"] == "1" and float(lines[row]["seconds_per_run"]) > 0
        assert lines[row]["int8_overall_mean"] == ""  # quantization is off in this grid
    text = (out / "results.md").read_text()
    assert "## IV" in text and "## V" in text and "| fused | 1/1 |" in text
    assert "Teachers (logits shared by every distilled row): teacher 0" in text
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "float overall" in resumed.stdout
