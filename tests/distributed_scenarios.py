"""Distributed-training scenarios, run by tests/test_distribution.py in fresh processes
(devices and the Keras backend are fixed when TensorFlow / JAX / Keras start).

    python tests/distributed_scenarios.py two-devices DATA_ROOT OUT_DIR
    python tests/distributed_scenarios.py train-twice DATA_ROOT OUT_DIR

`two-devices` (2 logical CPUs under TensorFlow, 2 host devices under JAX; the strategy from
ASC_STRATEGY) runs the one-step comparison, then `train-twice`, in one process: one start of
TensorFlow / JAX serves every scenario of a backend. `train-twice` alone is what each
MultiWorkerMirroredStrategy worker runs (TF_CONFIG names the worker).
"""

import json
import os
import sys
import time
from pathlib import Path

# Small inputs: what these scenarios check (replicas, collectives, checkpoints, resume) does
# not depend on the input size.
FRONTEND = {"n_mels": 64, "hop_length": 1000}
ONE_STEP_INPUT = (64, 32, 1)


def two_devices(backend):
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
        return []
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return ["/cpu:0", "/cpu:1"]


def one_step(strategy, devices, out):
    """Loss and weights after one distilled training step of sm2 on a global batch of 16,
    on two devices and on one; and the error for a batch the replicas cannot share."""
    import keras
    import numpy as np
    import tensorflow as tf

    from asc_keras.config import config_from_dict
    from asc_keras.distill import Distiller
    from asc_keras.distribution import (
        Distribution,
        DistributionError,
        setup_distribution,
        synchronize_batch_norm,
    )
    from asc_keras.models import build_model
    from asc_keras.training import build_optimizer

    def config(batch):
        return config_from_dict(
            {
                "distribution": {"strategy": strategy, "devices": devices},
                "training": {"batch_size": batch, "warmup_epochs": 0, "learning_rate": 0.001},
            }
        )

    results = {}
    try:
        setup_distribution(config(15), source="odd.yaml")
    except DistributionError as error:
        results["odd_batch_error"] = str(error)
    distribution = setup_distribution(config(16))
    results["replicas"] = distribution.replicas

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, *ONE_STEP_INPUT)).astype("float32")
    labels = np.arange(16) % 10
    teacher = rng.normal(size=(16, 10)).astype("float32")
    batch = tf.data.Dataset.from_tensors((x, {"label": labels, "teacher_logits": teacher}))

    def one_training_step(dist):
        keras.utils.set_random_seed(0)
        with dist.scope():
            student = build_model(config(16).model, input_shape=ONE_STEP_INPUT)
            if dist.sync_batch_norm:
                synchronize_batch_norm(student)
            distiller = Distiller(student, temperature=2.0, label_weight=0.1)
            distiller.compile(optimizer=build_optimizer(config(16).training, 1))
            data = dist.training_dataset(lambda size, shard: shard_of(batch, shard), 16)
            dist.prepare_fit(distiller, data)  # as fit_stage does
            distiller.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
            loss = distiller.evaluate(batch, verbose=0, return_dict=True)["loss"]
        return float(loss), [np.asarray(w) for w in student.get_weights()]

    def shard_of(dataset, shard):
        if shard is None:
            return dataset
        width = 16 // (shard.count * shard.replicas)
        return dataset.unbatch().batch(width)

    results["loss_distributed"], distributed = one_training_step(distribution)
    results["loss_single"], single = one_training_step(Distribution())
    results["weights_max_difference"] = max(
        float(np.abs(a - b).max()) for a, b in zip(distributed, single)
    )
    Path(out).write_text(json.dumps(results))


def train(config, splits, stage_dir, out_dir, name):
    """train_classifier under the config's strategy; saves the final weights (and who this
    worker is) to OUT_DIR/NAME-WORKER.npz."""
    import numpy as np

    from asc_keras.distribution import setup_distribution
    from asc_keras.recipe import train_classifier

    distribution = setup_distribution(config)
    model = train_classifier(
        config, stage_dir, splits, resume=True, verbose=2, distribution=distribution
    )
    weights = {f"arr_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    out = Path(out_dir) / f"{name}-{distribution.worker_index}.npz"
    np.savez(out, worker=distribution.worker_index, replicas=distribution.replicas, **weights)
    return distribution


def wait_for_files(*paths, timeout=300):
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {[str(p) for p in paths]}")
        time.sleep(0.05)


def train_twice(data_root, out_dir, strategy, devices):
    """A small sm1 trained for 1 epoch in OUT_DIR/stage, then, as if stopped after that epoch
    (last.keras removed), for 2 epochs with resume: weights of each run in OUT_DIR/
    first-WORKER.npz and second-WORKER.npz, the checkpoints after the first in
    OUT_DIR/first-checkpoints.json. Under multi_worker the workers meet between the runs."""
    from asc_keras.config import config_from_dict
    from asc_keras.data.pipeline import Splits

    out_dir = Path(out_dir)
    stage = out_dir / "stage"

    def config(epochs):
        return config_from_dict(
            {
                "data": {"root": data_root},
                "augment": {"dir": {"folder": "impulse_responses"}},
                "frontend": FRONTEND,
                "model": {"variant": "sm1"},
                "training": {"batch_size": 16, "epochs": epochs, "warmup_epochs": 0},
                "distribution": {"strategy": strategy, "devices": devices},
            }
        )

    splits = Splits.open(config(1), progress=False)
    first = train(config(1), splits, stage, out_dir, "first")
    worker = first.worker_index
    (out_dir / f"first-{worker}.done").touch()
    if first.is_chief:
        wait_for_files(*(out_dir / f"first-{i}.done" for i in range(first.num_workers)))
        names = sorted(p.name for p in (stage / "checkpoints").iterdir())
        (out_dir / "first-checkpoints.json").write_text(json.dumps(names))
        (stage / "last.keras").unlink()  # as if the run had been stopped after epoch 1
        (out_dir / "resume.go").touch()
    else:
        wait_for_files(out_dir / "resume.go")
    print("=== second run", flush=True)
    train(config(2), splits, stage, out_dir, "second")


def two_devices_scenarios(data_root, out_dir):
    backend = os.environ["KERAS_BACKEND"]
    strategy = os.environ["ASC_STRATEGY"]
    devices = two_devices(backend)
    one_step(strategy, devices, Path(out_dir) / "one-step.json")
    train_twice(data_root, out_dir, strategy, devices)


def multi_worker(data_root, out_dir):
    train_twice(data_root, out_dir, "multi_worker", [])


if __name__ == "__main__":
    {"two-devices": two_devices_scenarios, "train-twice": multi_worker}[sys.argv[1]](*sys.argv[2:])
