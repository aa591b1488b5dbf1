"""Distributed training: MirroredStrategy on 2 logical CPUs, JAX DataParallel on 2 host
devices, MultiWorkerMirroredStrategy with 2 local workers, and the errors before training.

The scenarios run in their own processes (tests/distributed_scenarios.py), one per backend and one
per worker: the device set and the
Keras backend are fixed when a process first starts TensorFlow / JAX.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from asc_keras.config import ConfigError, config_from_dict, load_config
from asc_keras.distribution import DistributionError, scaled_learning_rate, setup_distribution

SCENARIOS = Path(__file__).with_name("distributed_scenarios.py")
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # seconds; a hung collective fails the test instead of blocking CI


def scenario_environment(backend, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment.update(
        KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), **(env or {})
    )
    return environment


STRATEGIES = {"tensorflow": "mirrored", "jax": "data_parallel"}


@pytest.fixture(scope="module")
def two_device_runs(synthetic_root, tmp_path_factory):
    """backend -> (its output folder, its log): every two-device scenario of a backend, run
    once in one process (tests/distributed_scenarios.py two-devices). Each backend's pytest
    run (make test) runs its own backend's scenarios."""
    done = {}

    def run(backend):
        if backend not in done:
            out = tmp_path_factory.mktemp(f"two-devices-{backend}")
            env = scenario_environment(backend, {"ASC_STRATEGY": STRATEGIES[backend]})
            command = [sys.executable, str(SCENARIOS), "two-devices", synthetic_root, out]
            ran = subprocess.run(
                list(map(str, command)), env=env, capture_output=True, text=True, timeout=TIMEOUT
            )
            assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
            done[backend] = out, ran.stdout
        return done[backend]

    return run


def test_unknown_strategy_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("distribution:\n  strategy: horovod\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'distribution.strategy'.*horovod"):
        load_config(path)


@pytest.mark.multi_backend
def test_strategy_on_the_wrong_backend_fails_before_training():
    wrong = "mirrored" if keras.backend.backend() != "tensorflow" else "data_parallel"
    config = config_from_dict({"distribution": {"strategy": wrong}})
    with pytest.raises(DistributionError, match=f"'{wrong}' runs on the .* backend"):
        setup_distribution(config, source="run.yaml")


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    config = config_from_dict({"distribution": {"strategy": "multi_worker"}})
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DistributionError, match="needs the TF_CONFIG variable"):
        setup_distribution(config)
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {}}')
    with pytest.raises(DistributionError, match="TF_CONFIG is not a usable cluster"):
        setup_distribution(config)


def test_learning_rate_scaling_is_explicit():
    def scaled(how, batch):
        return scaled_learning_rate(
            config_from_dict(
                {
                    "training": {"batch_size": batch, "learning_rate": 0.004},
                    "distribution": {"learning_rate_scaling": how, "reference_batch_size": 256},
                }
            )
        )

    assert scaled("none", 1024) == (0.004, "learning rate 0.004")
    rate, how = scaled("linear", 1024)
    assert rate == pytest.approx(0.016) and "x 4 (linear scaling, batch 1024" in how
    assert scaled("sqrt", 1024)[0] == pytest.approx(0.008)


@pytest.mark.distributed
@pytest.mark.multi_backend
@pytest.mark.backends(*STRATEGIES)
def test_two_devices_reach_the_single_device_loss_after_one_step(two_device_runs):
    """The same global batch on two replicas and on one device gives the same update.

    Tolerances: the replicas sum their gradients and (synchronised) BatchNorm moments in
    another order than one device does, a float32 rounding difference (~1e-7 relative)
    that Adam's first step, which moves every weight by about +-lr, can only amplify where
    a gradient is ~0 (there the update itself is tiny). So the loss agrees to 1e-5
    relative and no weight differs by more than 1 % of one step (lr = 1e-3).
    """
    out, _ = two_device_runs(keras.backend.backend())
    result = json.loads((out / "one-step.json").read_text())
    assert result["replicas"] == 2
    assert (
        "training.batch_size 15 (the global batch) is not divisible by the 2"
        in (result["odd_batch_error"])
    )
    assert "odd.yaml" in result["odd_batch_error"]
    assert result["loss_distributed"] == pytest.approx(result["loss_single"], rel=1e-5)
    assert result["weights_max_difference"] < 1e-5


def load_weights(path):
    data = np.load(path)
    weights = [data[f"arr_{i}"] for i in range(len(data.files) - 2)]
    return int(data["worker"]), int(data["replicas"]), weights


@pytest.mark.distributed
@pytest.mark.multi_backend
@pytest.mark.backends(*STRATEGIES)
def test_recipe_trains_and_resumes_on_two_devices(two_device_runs):
    """train_classifier (pipeline shards, validation, checkpoints) under the strategy; a
    second run with more epochs resumes from the first one's checkpoint."""
    backend = keras.backend.backend()
    out, log = two_device_runs(backend)
    stage = out / "stage"
    strategy = STRATEGIES[backend]
    first_log, second_log = log.split("=== second run\n")
    assert json.loads((out / "first-checkpoints.json").read_text())[0] == "epoch-0001.json"
    assert "resuming stage" not in first_log
    assert "resuming stage from epoch 1" in second_log
    assert f"distribution {strategy}: 2 replicas" in second_log
    assert (stage / "checkpoints" / "epoch-0002.json").is_file()
    # The saved model is a plain one: it loads without the strategy.
    model = keras.saving.load_model(stage / "last.keras")
    assert not any(getattr(layer, "synchronized", False) for layer in model._flatten_layers())
    _, replicas, weights = load_weights(out / "second-0.npz")
    assert replicas == 2
    for saved, trained in zip(model.get_weights(), weights):
        np.testing.assert_allclose(saved, trained, rtol=0, atol=0)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(data_root, out_dir):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1, each training twice (the second
    run resuming the first's checkpoint) in one process; returns their logs."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = scenario_environment("tensorflow", {"TF_CONFIG": json.dumps(task)})
        command = [sys.executable, str(SCENARIOS), "train-twice", data_root, out_dir]
        workers.append(
            subprocess.Popen(
                list(map(str, command)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=TIMEOUT)[0])
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-4000:]
    return logs


@pytest.mark.slow
def test_two_workers_on_localhost_agree_and_resume(synthetic_root, tmp_path):
    """Two MultiWorkerMirroredStrategy workers (TF_CONFIG, 127.0.0.1 only): only the chief
    writes checkpoints, both resume from them, and both end with the same weights."""
    stage = tmp_path / "stage"
    logs = run_workers(synthetic_root, tmp_path)
    assert json.loads((tmp_path / "first-checkpoints.json").read_text()) == [
        "epoch-0001.json",
        "epoch-0001.weights.h5",
    ]
    for log in logs:
        first, second = log.split("=== second run\n")
        assert "resuming stage" not in first
        assert "resuming stage from epoch 1" in second
        assert "distribution multi_worker: 2 replicas on 2 worker(s)" in second
    chief, _, chief_weights = load_weights(tmp_path / "second-0.npz")
    other, _, other_weights = load_weights(tmp_path / "second-1.npz")
    assert (chief, other) == (0, 1)
    for a, b in zip(chief_weights, other_weights):
        np.testing.assert_array_equal(a, b)
    saved = keras.saving.load_model(stage / "last.keras").get_weights()
    for a, b in zip(saved, chief_weights):
        np.testing.assert_array_equal(a, b)
