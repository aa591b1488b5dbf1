"""Distributed-training scenarios, each run by tests/test_distribution.py in a fresh process
(devices and the Keras backend are fixed when TensorFlow / JAX / Keras start).

    python tests/distributed_scenarios.py one-step OUT.json
    python tests/distributed_scenarios.py train DATA_ROOT STAGE_DIR EPOCHS OUT.npz

The backend comes from KERAS_BACKEND (two devices: 2 logical CPUs under TensorFlow, 2 host
devices under JAX); `train` reads the strategy from ASC_STRATEGY.
"""

import json
import os
import sys

STRATEGY = {"tensorflow": "mirrored", "jax": "data_parallel"}


def two_devices(backend):
    if backend == "jax":
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        return []
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
    return ["/cpu:0", "/cpu:1"]


def one_step(out):
    """Loss and weights after one distilled training step of sm2 on a global batch of 16,
    on two devices and on one; and the errors for bad settings."""
    backend = os.environ["KERAS_BACKEND"]
    devices = two_devices(backend)
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
                "distribution": {"strategy": STRATEGY[backend], "devices": devices},
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
    x = rng.normal(size=(16, 256, 64, 1)).astype("float32")
    labels = np.arange(16) % 10
    teacher = rng.normal(size=(16, 10)).astype("float32")
    batch = tf.data.Dataset.from_tensors((x, {"label": labels, "teacher_logits": teacher}))

    def one_training_step(dist):
        keras.utils.set_random_seed(0)
        with dist.scope():
            student = build_model(config(16).model)
            if dist.sync_batch_norm:
                synchronize_batch_norm(student)
            distiller = Distiller(student, temperature=2.0, label_weight=0.1)
            distiller.compile(optimizer=build_optimizer(config(16).training, 1))
            data = dist.training_dataset(lambda size, shard: shard_of(batch, shard), 16)
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
    with open(out, "w") as f:
        json.dump(results, f)


def train(data_root, stage_dir, epochs, out):
    """train_classifier of a small sm1 under ASC_STRATEGY on the synthetic dataset; saves
    the final weights (and who this worker is) to OUT.npz."""
    backend = os.environ["KERAS_BACKEND"]
    strategy = os.environ["ASC_STRATEGY"]
    devices = two_devices(backend) if strategy != "multi_worker" else []
    import numpy as np

    from asc_keras.config import config_from_dict
    from asc_keras.data.pipeline import Splits
    from asc_keras.distribution import setup_distribution
    from asc_keras.recipe import train_classifier

    config = config_from_dict(
        {
            "data": {"root": data_root},
            "augment": {"dir": {"folder": "impulse_responses"}},
            "model": {"variant": "sm1"},
            "training": {"batch_size": 16, "epochs": int(epochs), "warmup_epochs": 0},
            "distribution": {"strategy": strategy, "devices": devices},
        }
    )
    distribution = setup_distribution(config)
    splits = Splits.open(config, progress=False)
    model = train_classifier(
        config, stage_dir, splits, resume=True, verbose=2, distribution=distribution
    )
    weights = {f"arr_{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    np.savez(out, worker=distribution.worker_index, replicas=distribution.replicas, **weights)


if __name__ == "__main__":
    {"one-step": one_step, "train": train}[sys.argv[1]](*sys.argv[2:])
