"""Training on several devices or machines with the engines Keras already runs on.

- `mirrored`: tf.distribute.MirroredStrategy over the local GPUs (TensorFlow backend).
- `multi_worker`: tf.distribute.MultiWorkerMirroredStrategy over the machines that TF_CONFIG
  lists (TensorFlow backend); each worker runs the same command.
- `data_parallel`: keras.distribution.DataParallel over the local JAX devices (JAX backend).

`training.batch_size` is the global batch, split evenly over the replicas. Under the
tf.distribute strategies every worker builds only its own part of each epoch (see
`pipeline.Shard`), BatchNorm statistics are synchronised over the global batch
(`distribution.sync_batch_norm`), only the chief writes checkpoints and outputs, and every
worker restores from the chief's checkpoints. docs/training.md, "Scaling out".
"""

import contextlib
import dataclasses
import json
import math
import os
from pathlib import Path

import keras

from asc_keras.compat import all_layers, symbolic_build_once
from asc_keras.errors import UserError

# The Keras backend each strategy runs on.
BACKENDS = {"mirrored": "tensorflow", "multi_worker": "tensorflow", "data_parallel": "jax"}


class DistributionError(UserError, ValueError):
    """A distribution setting that cannot work in this process; raised before training."""


@dataclasses.dataclass
class Distribution:
    """The resolved distribution of this process (see `setup_distribution`)."""

    name: str = "none"
    replicas: int = 1
    worker_index: int = 0
    num_workers: int = 1
    strategy: object = None  # a tf.distribute.Strategy (mirrored, multi_worker)
    keras_distribution: object = None  # a keras.distribution.DataParallel (data_parallel)
    sync_batch_norm: bool = False
    shared_run_dir: Path | None = None  # the chief's run folder, seen from another worker

    @property
    def is_chief(self):
        return self.worker_index == 0

    def scope(self):
        """Where models, optimisers and Distillers are created, compiled and trained."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.keras_distribution is not None:
            return self.keras_distribution.scope()
        return contextlib.nullcontext()

    @property
    def distributed(self):
        return self.strategy is not None or self.keras_distribution is not None

    def describe(self, batch_size):
        if self.name == "none":
            return f"distribution none: 1 device, batch {batch_size}"
        return (
            f"distribution {self.name}: {self.replicas} replicas on {self.num_workers} "
            f"worker(s), this is worker {self.worker_index}"
            f"{' (chief)' if self.is_chief else ''}; global batch {batch_size} = "
            f"{self.replicas} x {batch_size // self.replicas}"
        )

    def training_dataset(self, make, global_batch):
        """What `model.fit` takes from `make(batch_size, shard)` -> tf.data.Dataset.

        tf.distribute: one pipeline per worker, each making only its shard of every global
        batch, cut into per-replica batches. Otherwise the global batches themselves (JAX
        DataParallel splits each one over the devices).
        """
        if self.strategy is None:
            return make(global_batch, None)
        from asc_keras.data.pipeline import Shard

        def for_pipeline(context):
            shard = Shard(
                count=context.num_input_pipelines,
                index=context.input_pipeline_id,
                replicas=self.replicas // context.num_input_pipelines,
            )
            dataset = make(global_batch, shard)
            self._element_spec = dataset.element_spec
            return dataset

        return self.strategy.distribute_datasets_from_function(for_pipeline)

    def prepare_fit(self, model, dataset):
        """Builds `model`'s metrics, loss and optimizer before `fit(dataset)`, from the batch
        spec (per replica under tf.distribute) of `dataset`, the last `training_dataset`.

        TensorFlow backend, one device: Keras would build them while tracing the first
        training step, and a `tf.function` whose first trace creates variables is traced a
        second time; built here, the step is traced once.
        tf.distribute: Keras would instead take a first batch from the training iterator and
        reduce it across replicas: that batch is then never trained on (shifting every later
        batch by one, so a resumed run would not see the batches an uninterrupted one sees),
        and the reduction fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
        """
        if self.strategy is None:
            if self.keras_distribution is None and keras.backend.backend() == "tensorflow":
                symbolic_build_once(model, dataset.element_spec)
            return
        with self.strategy.scope():
            symbolic_build_once(model, self._element_spec)
        if self.name == "multi_worker":
            # Keras averages each step's logs over the replicas with strategy.reduce(MEAN,
            # axis=0), which fails on scalars under MultiWorkerMirroredStrategy. Its metric
            # variables already sum their updates over all replicas (every replica holds
            # the global figure), so logs of shape (1,) average to that same figure.
            for step in ("train_step", "test_step"):
                setattr(model, step, _logs_as_vectors(getattr(model, step)))

    def evaluation_dataset(self, dataset):
        """An evaluation dataset of (features, labels) batches for `fit(validation_data=...)`.

        tf.distribute: every worker reads the whole (small) split and keeps its own batches
        (sharding by data: the cache is one file that every worker reads, so sharding by
        file cannot apply). JAX DataParallel needs batches that split evenly over the
        devices: the last batch is padded with zero-weight clips, so accuracy counts the real
        clips only (Keras still weighs that batch's mean loss by its padded size).
        """
        import tensorflow as tf

        if self.strategy is not None:
            options = tf.data.Options()
            policy = tf.data.experimental.AutoShardPolicy.DATA
            options.experimental_distribute.auto_shard_policy = policy
            return dataset.with_options(options)
        if self.keras_distribution is None:
            return dataset
        replicas = self.replicas

        def pad(features, labels):
            count = tf.shape(labels)[0]
            extra = (replicas - count % replicas) % replicas
            weights = tf.concat([tf.ones([count]), tf.zeros([extra])], 0)
            features = tf.pad(features, [[0, extra]] + [[0, 0]] * (len(features.shape) - 1))
            return features, tf.pad(labels, [[0, extra]]), weights

        return dataset.map(pad)

    def chief_path(self, path):
        """`path` under this worker's run folder -> the same path under the chief's."""
        if self.shared_run_dir is None:
            return Path(path)
        return self.shared_run_dir / Path(path).relative_to(self.worker_run_dir())

    def worker_run_dir(self):
        """Where a worker other than the chief writes its (discarded) outputs."""
        return self.shared_run_dir / "workers" / f"worker-{self.worker_index}"


def scaled_learning_rate(config):
    """(peak learning rate, how it was scaled): config.distribution.learning_rate_scaling of
    training.learning_rate by training.batch_size / reference_batch_size."""
    d, training = config.distribution, config.training
    ratio = training.batch_size / d.reference_batch_size
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[d.learning_rate_scaling]
    rate = training.learning_rate * factor
    how = (
        f"learning rate {rate:g}"
        if d.learning_rate_scaling == "none"
        else f"learning rate {training.learning_rate:g} x {factor:g} ({d.learning_rate_scaling} "
        f"scaling, batch {training.batch_size} / reference {d.reference_batch_size}) = {rate:g}"
    )
    return rate, how


_ACTIVE = {}


def setup_distribution(config, source="config"):
    """The `Distribution` that config.distribution asks for, checked before any training.

    Raises DistributionError for a strategy on the wrong backend, a missing or malformed
    TF_CONFIG, or a global batch that the replicas cannot share evenly. One strategy per
    process: a second call with the same settings returns the first one.
    """
    d = config.distribution
    key = (d.strategy, tuple(d.devices), d.sync_batch_norm)
    if key not in _ACTIVE:
        if d.strategy != "none" and any(active[0] != "none" for active in _ACTIVE):
            raise DistributionError(
                f"{source}: distribution {d.strategy!r} asked for after another distribution "
                f"in the same process; use one distribution section per run"
            )
        _ACTIVE[key] = _create(d, source)
    distribution = _ACTIVE[key]
    batch = config.training.batch_size
    if batch % distribution.replicas:
        raise DistributionError(
            f"{source}: training.batch_size {batch} (the global batch) is not divisible by "
            f"the {distribution.replicas} replicas of distribution {d.strategy!r}; use a "
            f"multiple of {distribution.replicas}"
        )
    return distribution


def _require_backend(name, source):
    needed = BACKENDS[name]
    if keras.backend.backend() != needed:
        raise DistributionError(
            f"{source}: distribution.strategy {name!r} runs on the {needed} backend, but this "
            f"process runs Keras on {keras.backend.backend()!r}; set KERAS_BACKEND={needed}"
        )


def _create(d, source):
    name = d.strategy
    if name == "none":
        return Distribution()
    _require_backend(name, source)
    if name == "data_parallel":
        devices = list(d.devices) or keras.distribution.list_devices()
        try:
            data_parallel = keras.distribution.DataParallel(devices=devices)
        except (ValueError, RuntimeError) as error:
            raise DistributionError(
                f"{source}: distribution.devices {devices} cannot be used: {error}"
            ) from error
        return Distribution(name, replicas=len(devices), keras_distribution=data_parallel)
    import tensorflow as tf

    if name == "mirrored":
        try:
            strategy = tf.distribute.MirroredStrategy(devices=list(d.devices) or None)
        except (ValueError, RuntimeError) as error:
            raise DistributionError(
                f"{source}: distribution.devices {list(d.devices)} cannot be used: {error}"
            ) from error
        return Distribution(
            name,
            replicas=strategy.num_replicas_in_sync,
            strategy=strategy,
            sync_batch_norm=d.sync_batch_norm and strategy.num_replicas_in_sync > 1,
        )
    if d.devices:
        raise DistributionError(
            f"{source}: distribution.devices is not used by 'multi_worker' (each worker uses "
            f"its local GPUs); remove it"
        )
    task = _tf_config_task(source)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    resolver = strategy.cluster_resolver
    workers = sum(
        len(resolver.cluster_spec().as_dict().get(job, [])) for job in ("chief", "worker")
    )
    # The chief is task "chief", or worker 0 when the cluster has no chief.
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    index = 0 if task["type"] == "chief" else task["index"] + int(has_chief)
    return Distribution(
        name,
        replicas=strategy.num_replicas_in_sync,
        worker_index=index,
        num_workers=workers,
        strategy=strategy,
        sync_batch_norm=d.sync_batch_norm and strategy.num_replicas_in_sync > 1,
    )


def _tf_config_task(source):
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DistributionError(
            f"{source}: distribution 'multi_worker' needs the TF_CONFIG variable (the cluster's "
            f"worker addresses and this worker's task; docs/training.md, 'Scaling out')"
        )
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        if task["type"] not in ("chief", "worker") or task["type"] not in cluster:
            raise KeyError(task["type"])
        if not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise KeyError("index")
    except (ValueError, KeyError, TypeError) as error:
        raise DistributionError(
            f"TF_CONFIG is not a usable cluster description ({error!r}); expected "
            f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", '
            f'"index": N}}}}'
        ) from error
    return {"type": task["type"], "index": int(task["index"])}


def batch_norm_layers(model):
    return [
        layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]


def synchronize_batch_norm(model):
    """BatchNorm layers of `model` compute their training statistics over the global batch
    (all replicas), as on one device. Call before the first training step."""
    for layer in batch_norm_layers(model):
        layer.synchronized = True


@contextlib.contextmanager
def unsynchronized_batch_norm(model):
    """Saves from inside this block record plain BatchNorm layers, so the saved model loads
    on every backend (synchronisation is a training-time setting of tf.distribute)."""
    layers = [layer for layer in batch_norm_layers(model) if layer.synchronized]
    for layer in layers:
        layer.synchronized = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.synchronized = True


def _logs_as_vectors(step):
    def wrapped(data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

    return wrapped
