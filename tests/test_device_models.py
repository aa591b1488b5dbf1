"""DCASE 2025 device models: the tiny recipe's device model for device b (conftest.py), the
system report, and the errors before any work."""

import json

import numpy as np
import pytest

from asc_keras.config import ConfigError, config_from_dict
from asc_keras.device_models import check_device_clips


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
