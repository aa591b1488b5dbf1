from pathlib import Path

import pytest

from asc_keras.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
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
