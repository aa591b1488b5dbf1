from pathlib import Path

import pytest

from asc_keras.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    if path.name.startswith("experiment_"):  # tools/experiment.py files: every row checked
        from asc_keras.experiment import load_experiment

        experiment = load_experiment(path)
        # Rows equal to another row (its config) share its runs: Table V's last is Table IV's
        # fused; in experiment_kd, "T 2" and "label weight 0.1" are the demo's settings.
        distinct = {
            "experiment_kd.yaml": 10,
            "experiment_splits.yaml": 10,
            "experiment_dcase2025.yaml": 1,
            "experiment_demo_student.yaml": 1,
        }.get(path.name, 14)
        assert len({row.folder for row in experiment.rows}) == distinct
    else:
        load_config(path)


def test_student_configs_have_the_paper_recipe():
    config = load_config(CONFIGS[0].parent / "sm2.yaml")
    assert config.training.epochs == 250
    assert (config.augment.freq_mixstyle.probability, config.augment.freq_mixstyle.alpha) == (
        0.4,
        0.3,
    )
    assert config.augment.dir.probability == 0.6 and config.augment.dir.energy_threshold == "auto"
    assert config.model.norm == "residual" and config.teachers.fusion == "fused"
    teacher = load_config(CONFIGS[0].parent / "teacher_cpresnet.yaml")
    assert (teacher.augment.freq_mixstyle.probability, teacher.augment.dir.probability) == (
        0.8,
        0.4,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  varaint: sm2\n", r"bad.yaml: unknown key model.'varaint'"),
        (
            "training:\n  epochs: ten\n",
            r"bad.yaml: key 'training.epochs' has value 'ten'; expected an integer",
        ),
        ("model:\n  variant: sm9\n", r"'model.variant' has value 'sm9'; expected one of \['sm1'"),
        ("augment:\n  dir:\n    energy_threshold: high\n", r"augment.dir.energy_threshold"),
        ("training: 5\n", r"'training' has value 5; expected a mapping"),
        ("model: [\n", r"bad.yaml: not valid YAML"),
    ],
)
def test_bad_configs_name_the_file_the_key_and_the_value(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  epochs: 0\n", r"'training.epochs' has value 0; expected a value >= 1"),
        ("training:\n  epochs: -5\n", r"'training.epochs' has value -5; expected a value >= 1"),
        ("training:\n  batch_size: -4\n", r"'training.batch_size' has value -4; expected a value"),
        (
            "training:\n  learning_rate: .nan\n",
            r"'training.learning_rate' has value nan; expected a finite number",
        ),
        (
            "training:\n  learning_rate: 0\n",
            r"'training.learning_rate' has value 0.0; expected a value > 0",
        ),
        (
            "augment:\n  dir:\n    probability: 7.0\n",
            r"'augment.dir.probability' has value 7.0; expected a value in \[0, 1\]",
        ),
        (
            "augment:\n  freq_mixstyle:\n    probability: -0.1\n",
            r"'augment.freq_mixstyle.probability' has value -0.1",
        ),
        ("augment:\n  dir:\n    energy_threshold: -3\n", r"'augment.dir.energy_threshold'"),
        ("distillation:\n  label_weight: 1.5\n", r"'distillation.label_weight' has value 1.5"),
        ("distillation:\n  temperature: .inf\n", r"'distillation.temperature' has value inf"),
        ("model:\n  num_classes: 1\n", r"'model.num_classes' has value 1; expected a value >= 2"),
        (
            "quantization:\n  epochs: 3\n  freeze_epochs: 4\n",
            r"bad.yaml: quantization.freeze_epochs \(4\) is more than quantization.epochs \(3\)",
        ),
        ("frontend:\n  win_length: 5000\n", r"frontend.win_length \(5000\) is longer"),
        ("frontend:\n  fmax: 20000\n", r"fmax \(20000.0\) must satisfy"),
    ],
)
def test_values_out_of_range_are_refused_at_load_time(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}: ")


def test_the_limits_themselves_are_accepted(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text(
        "training:\n  epochs: 1\n  warmup_epochs: 0\n"
        "augment:\n  dir:\n    probability: 1.0\n  time_roll: 0\n"
        "quantization:\n  epochs: 0\n  freeze_epochs: 0\n"
    )
    config = load_config(path)
    assert config.training.epochs == 1 and config.augment.dir.probability == 1.0


def test_quantizing_the_student_without_a_teacher_needs_that_student(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("quantization:\n  student: best\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: quantization.student 'best' needs distil"):
        load_config(path)
    path.write_text(
        "quantization:\n  student: without_teacher\n"
        "distillation:\n  compare_without_teacher: true\n"
    )
    assert load_config(path).quantization.student == "without_teacher"


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  epochs: 2\n  epochs: 50\n", r"dup.yaml, line 3: key 'epochs' appears twice"),
        (
            "training:\n  batch_size: 16\nmodel:\n  variant: sm1\ntraining:\n  epochs: 5\n",
            r"dup.yaml, line 5: key 'training' appears twice in one section \(first on line 1\)",
        ),
    ],
)
def test_a_key_given_twice_is_refused_with_file_and_line(tmp_path, text, message):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path):
    from asc_keras.errors import UserError

    path = tmp_path / "latin1.yaml"
    path.write_bytes("training:\n  epochs: 2  # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.yaml: not UTF-8 text: byte 0xe9 at offset 28"):
        load_config(path)


def test_set_changes_keys_like_the_file_does(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  epochs: 2\nmodel: {variant: sm1}\n")
    config = load_config(
        path, ["training.epochs=5", "augment.dir.devices=[a, b]", "data.memory_budget_gb=null"]
    )
    assert config.training.epochs == 5 and config.model.variant == "sm1"
    assert config.augment.dir.devices == ["a", "b"] and config.data.memory_budget_gb is None


@pytest.mark.parametrize(
    "item, message",
    [
        (
            "training.epochs=abc",
            r"--set training.epochs=abc: key 'training.epochs' has value 'abc'",
        ),
        ("training.epoch=3", r"--set training.epoch=3: unknown key training.'epoch'"),
        ("training.epochs=0", r"--set training.epochs=0: key 'training.epochs' has value 0"),
        ("epochs", r"--set epochs: expected KEY=VALUE"),
        ("training.epochs.x=1", r"--set training.epochs.x=1: training.epochs is not a section"),
    ],
)
def test_a_bad_set_names_the_flag(tmp_path, item, message):
    path = tmp_path / "run.yaml"
    path.write_text("training: {epochs: 2}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path, [item])


def test_train_py_takes_set_and_names_a_bad_one(tmp_path):
    import subprocess

    from tests.helpers import error_line, train_command

    path = tmp_path / "run.yaml"
    path.write_text("training: {epochs: 2}\n")
    command, env = train_command(path, tmp_path / "run", "--set", "training.epochs=-1")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert error_line(done).startswith(
        "error: --set training.epochs=-1: key 'training.epochs' has value -1"
    )
    assert not (tmp_path / "run").exists()


def test_experiment_set_changes_the_base_config_of_every_row(tmp_path):
    from asc_keras.experiment import load_experiment

    (tmp_path / "base.yaml").write_text("model: {variant: sm1}\n")
    (tmp_path / "grid.yaml").write_text(
        "config: base.yaml\ntables:\n  T:\n    a: {}\n    b: {training: {seed: 3}}\n"
    )
    experiment = load_experiment(tmp_path / "grid.yaml", overrides=["training.epochs=7"])
    assert [row.config.training.epochs for row in experiment.rows] == [7, 7]
    assert experiment.rows[1].config.training.seed == 3
