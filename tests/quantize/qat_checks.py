"""The QAT checks of tests/quantize/test_qat.py, run together in a process of their own
(`python -m tests.quantize.qat_checks FOLDER`): tfmot switches its process to legacy Keras,
as in the quantization stage. Each check returns its results; the process prints them, by
check, as one JSON object on its last line. FOLDER takes the checkpoint check's files."""

import json
import sys
from pathlib import Path

import numpy as np


def calibration():
    """Calibrated ranges, BatchNorm folding and the int8 scales of a small QAT model."""
    from asc_keras import ds_flexinet
    from asc_keras.quantize import qat
    from asc_keras.quantize.twin import build_twin

    rng = np.random.default_rng(0)
    batches = [rng.uniform(-12, 5, (8, 256, 64, 1)).astype(np.float32) for _ in range(3)]
    twin = build_twin(ds_flexinet("sm1", norm="batch"))
    reference = twin.predict(batches[0], verbose=0)

    def simulated_error(model):
        return float(np.abs(model.predict(batches[0], verbose=0) - reference).max())

    fresh = qat.make_qat_model(twin)
    calibrated = qat.make_qat_model(twin)
    stats = [
        np.array(v) for bn in qat.batch_norm_layers(calibrated) for v in bn.non_trainable_weights
    ]
    qat.calibrate(calibrated, batches)
    after = [
        np.array(v) for bn in qat.batch_norm_layers(calibrated) for v in bn.non_trainable_weights
    ]
    low, high = (float(calibrated.layers[1].weights[i].numpy()) for i in (0, 1))
    # The converted QAT model holds exactly the Keras parameters with BatchNorm folded.
    from asc_keras.complexity import count_model, count_tflite, folded_param_count
    from asc_keras.evaluation.tflite import interpreter
    from asc_keras.quantize.convert import convert, op_table
    from tools.check_int8_variants import randomize_normalization

    sm2 = ds_flexinet("sm2")
    # Normalisation weights drawn apart: the converter shares equal constants, which count once.
    randomize_normalization(sm2)
    sm2_qat = qat.make_qat_model(build_twin(sm2))
    qat.calibrate(sm2_qat, batches)
    int8 = convert(sm2_qat, batches[:1])

    def ranges_of(model):
        return {
            name: [float(r["min_var"].numpy()), float(r["max_var"].numpy())]
            for name, r in model.get_layer("quant_stem_norm").layer.inner_ranges.items()
        }

    norm = sm2_qat.get_layer("quant_stem_norm").layer
    inner_ranges = ranges_of(sm2_qat)
    # The same model calibrated with min / max ranges everywhere.
    min_max = qat.make_qat_model(build_twin(sm2))
    qat.calibrate(min_max, batches, outlier_ranges=())
    # One QAT training step: the moving averages move every range but the outlier ones.
    import tf_keras

    sm2_qat.compile(tf_keras.optimizers.SGD(1e-3), loss="mse")
    sm2_qat.fit(batches[0], np.zeros((8, 10), np.float32), epochs=1, verbose=0)
    scales = {d["name"]: d["quantization"][0] for d in interpreter(int8).get_tensor_details()}
    return {
        "inner_ranges": inner_ranges,
        "min_max_ranges": ranges_of(min_max),
        "trained_ranges": ranges_of(sm2_qat),
        "outlier_ranges": list(qat.OUTLIER_RANGES),
        "epsilon": norm.epsilon,
        "largest_lambda": float(np.max(norm.residual_lambda.numpy())),
        "inner_tensors": list(norm.inner_tensors),
        # int8 scales of the inner tensors the int8 model names (all but rsqrt).
        "inner_scales": {
            name: next(v for k, v in scales.items() if k.endswith("quant_stem_norm/" + name))
            for name in norm.inner_tensors
            if name != "rsqrt"
        },
        "tflite_params": count_tflite(int8)["params"],
        "ops": sorted({name for name, _, _ in op_table(int8)}),
        "folded_params": folded_param_count(count_model(sm2)),
        "input_range": [low, high],
        "observed": [
            float(min(b.min() for b in batches)),
            float(max(b.max() for b in batches)),
        ],
        "bn_unchanged": all(np.array_equal(a, b) for a, b in zip(stats, after)),
        "bn_layers": len(stats) // 2,
        "error_fresh": simulated_error(fresh),
        "error_calibrated": simulated_error(calibrated),
        "logit_scale": float(np.abs(reference).max()),
    }


def loss():
    """The QAT loss (eq. 5 on packed targets) on fixed numbers, and two epochs of it."""
    import tensorflow as tf
    import tf_keras

    from asc_keras.compat import build_legacy_model_for_fit
    from asc_keras.quantize import qat

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 8)
    teacher, student = rng.normal(size=(2, 8, 10)).astype(np.float32)
    packed = np.concatenate([labels[:, None], teacher], axis=1).astype(np.float32)
    kd = qat.make_loss(2.0, 0.3)(tf.constant(packed), tf.constant(student)).numpy()
    hard = qat.make_loss(2.0, 0.3)(tf.constant(packed[:, :1]), tf.constant(student)).numpy()
    model = tf_keras.Sequential([tf_keras.layers.Dense(10, input_shape=(4,))])
    accuracy = tf_keras.metrics.MeanMetricWrapper(qat.packed_accuracy, name="accuracy")
    model.compile(tf_keras.optimizers.Adam(0.1), loss=qat.make_loss(2.0, 0.3), metrics=[accuracy])
    # Built as fine_tune builds it: fit then traces its training step once.
    build_legacy_model_for_fit(model, tf.zeros([1, 10]), tf.zeros([1, 11]))
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: traces.append(1) or train_step(data)
    history = model.fit(rng.normal(size=(8, 4)), packed, epochs=2, verbose=0).history
    return {
        "kd": kd.tolist(),
        "hard": hard.tolist(),
        "loss": history["loss"],
        "traces": len(traces),
        "labels": labels.tolist(),
        "teacher": teacher.tolist(),
        "student": student.tolist(),
    }


def checkpoint(folder):
    """A QAT checkpoint restored into the same graph, then into another one."""
    import tf_keras

    from asc_keras import ds_flexinet
    from asc_keras.errors import UserError
    from asc_keras.quantize import qat
    from asc_keras.quantize.twin import build_twin

    def restored(norm, save=False):
        model = qat.make_qat_model(build_twin(ds_flexinet("sm1", norm=norm)))
        optimizer = tf_keras.optimizers.Adam(1e-4)
        optimizer.build(model.trainable_variables)  # as after a fitted epoch
        callback = qat.EpochCheckpoints(folder, model, optimizer)
        if save:
            return callback.on_epoch_end(0, {"loss": 1.0})
        try:
            return callback.restore(model.trainable_variables)
        except UserError as error:
            return str(error)

    restored("residual", save=True)
    # The same graph resumes after epoch 1; another graph in the same folder is refused.
    return {"same graph": restored("residual"), "another graph": restored("batch")}


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    # calibration first: it finds tensors by the layer names of the first models built.
    results = {
        "calibration": calibration(),
        "loss": loss(),
        "checkpoint": checkpoint(folder / "quantized" / "qat-checkpoints" / "free"),
    }
    print(json.dumps(results))
