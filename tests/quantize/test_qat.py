"""QAT calibration. tfmot switches its process to legacy Keras, so the check runs in a
subprocess (as the quantization stage does)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import json, sys
import numpy as np
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
stats = [np.array(v) for bn in qat.batch_norm_layers(calibrated) for v in bn.non_trainable_weights]
qat.calibrate(calibrated, batches)
after = [np.array(v) for bn in qat.batch_norm_layers(calibrated) for v in bn.non_trainable_weights]
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
print(json.dumps({
    "inner_ranges": inner_ranges,
    "min_max_ranges": ranges_of(min_max),
    "trained_ranges": ranges_of(sm2_qat),
    "outlier_ranges": list(qat.OUTLIER_RANGES),
    "epsilon": norm.epsilon,
    "inner_tensors": list(norm.inner_tensors),
    # int8 scales of (x - mean), its square, its product with rsqrt, and lambda * x.
    "inner_scales": {
        name: next(v for k, v in scales.items() if k.endswith("quant_stem_norm/" + name))
        for name in ("centered", "squared", "variance", "normalized", "scaled")
    },
    "tflite_params": count_tflite(int8)["params"],
    "ops": sorted({name for name, _, _ in op_table(int8)}),
    "folded_params": folded_param_count(count_model(sm2)),
    "input_range": [low, high],
    "observed": [float(min(b.min() for b in batches)), float(max(b.max() for b in batches))],
    "bn_unchanged": all(np.array_equal(a, b) for a, b in zip(stats, after)),
    "bn_layers": len(stats) // 2,
    "error_fresh": simulated_error(fresh),
    "error_calibrated": simulated_error(calibrated),
    "logit_scale": float(np.abs(reference).max()),
}))
"""


def test_calibration_sets_min_max_ranges_and_batchnorms_fold():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The input quantizer spans exactly what it saw (tfmot would start at [-6, 6]).
    assert abs(result["input_range"][0] - result["observed"][0]) < 1e-5
    assert abs(result["input_range"][1] - result["observed"][1]) < 1e-5
    assert result["bn_layers"] > 0 and result["bn_unchanged"]
    # Fake quantisation with calibrated ranges stays close to the float model (a BatchNorm
    # sm1: a random ResidualNorm model's logits are all near 0); with tfmot's initial
    # ranges the clipped input alone changes the logits far more.
    # (Measured: 1.3 % of the largest logit calibrated, 100 % with tfmot's initial ranges.)
    assert result["error_calibrated"] < 0.05 * result["logit_scale"]
    assert result["error_calibrated"] < result["error_fresh"] / 10
    # Every BatchNorm, the depthwise ones included, is folded into its convolution.
    assert result["tflite_params"] == result["folded_params"]
    # Average pooling keeps its input's scale: no requantising QUANTIZE op inside the model.
    assert "AVERAGE_POOL_2D" in result["ops"] and "QUANTIZE" not in result["ops"]
    # Every inner ResidualNorm tensor has a fake quantizer with a calibrated range, and the
    # int8 model takes those ranges. (Without them the converter gave (x - mean), its product
    # with rsqrt and lambda * x all the output's scale: in the demo student, 20 steps over
    # the range of (x - mean).)
    ranges = result["inner_ranges"]
    assert sorted(ranges) == sorted(result["inner_tensors"])
    assert all(low <= 0 <= high and [low, high] != [-6, 6] for low, high in ranges.values())
    for name, scale in result["inner_scales"].items():
        low, high = ranges[name]
        assert abs(scale - (high - low) / 255) < 0.01 * scale, (name, scale, low, high)
    # The squares take a percentile, below their maximum; the reciprocal square root the
    # maximum, but no more than the smallest non-zero int8 variance gives. Both keep their
    # range while QAT trains; every other range is the min / max and moves with training.
    assert result["outlier_ranges"] == ["squared", "rsqrt"]
    min_max, trained = result["min_max_ranges"], result["trained_ranges"]
    assert ranges["squared"][0] == 0 and 0 < ranges["squared"][1] < min_max["squared"][1]
    variance_step = (ranges["variance"][1] - ranges["variance"][0]) / 255
    cap = 1 / (variance_step / 2 + result["epsilon"]) ** 0.5
    assert ranges["rsqrt"][0] == min_max["rsqrt"][0]
    assert abs(ranges["rsqrt"][1] - min(cap, min_max["rsqrt"][1])) < 1e-4 * cap
    for name, (low, high) in ranges.items():
        if name in result["outlier_ranges"]:
            assert trained[name] == [low, high], name
        else:
            assert [low, high] == min_max[name], name
    assert any(
        trained[name] != ranges[name] for name in ranges if name not in result["outlier_ranges"]
    )


LOSS_CHECK = """
import json
import numpy as np
from asc_keras.quantize import qat
import tensorflow as tf, tf_keras

rng = np.random.default_rng(0)
labels = rng.integers(0, 10, 8)
teacher, student = rng.normal(size=(2, 8, 10)).astype(np.float32)
packed = np.concatenate([labels[:, None], teacher], axis=1).astype(np.float32)
kd = qat.make_loss(2.0, 0.3)(tf.constant(packed), tf.constant(student)).numpy()
hard = qat.make_loss(2.0, 0.3)(tf.constant(packed[:, :1]), tf.constant(student)).numpy()
model = tf_keras.Sequential([tf_keras.layers.Dense(10, input_shape=(4,))])
model.compile(tf_keras.optimizers.SGD(0.1), loss=qat.make_loss(2.0, 0.3))
history = model.fit(rng.normal(size=(8, 4)), packed, epochs=2, verbose=0).history
print(json.dumps({"kd": kd.tolist(), "hard": hard.tolist(), "loss": history["loss"],
                  "labels": labels.tolist(), "teacher": teacher.tolist(),
                  "student": student.tolist()}))
"""


def test_qat_fine_tunes_on_the_distillers_eq5_loss():
    import numpy as np

    done = subprocess.run(
        [sys.executable, "-c", LOSS_CHECK], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    labels, teacher, student = (np.array(out[k]) for k in ("labels", "teacher", "student"))

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    hard = -log_softmax(student)[np.arange(8), labels]
    t, s = log_softmax(teacher / 2.0), log_softmax(student / 2.0)
    kl = (np.exp(t) * (t - s)).sum(axis=1)
    np.testing.assert_allclose(out["kd"], 0.3 * hard + 0.7 * 4.0 * kl, rtol=1e-5)
    np.testing.assert_allclose(out["hard"], hard, rtol=1e-5)
    assert all(np.isfinite(out["loss"])) and out["loss"][1] < out["loss"][0]


CHECKPOINT_CHECK = """
import sys
import tf_keras
from asc_keras import ds_flexinet
from asc_keras.errors import UserError
from asc_keras.quantize import qat
from asc_keras.quantize.twin import build_twin

def restored(norm, save=False):
    model = qat.make_qat_model(build_twin(ds_flexinet("sm1", norm=norm)))
    optimizer = tf_keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)  # as after a fitted epoch
    callback = qat.EpochCheckpoints(sys.argv[1], model, optimizer)
    if save:
        return callback.on_epoch_end(0, {"loss": 1.0})
    try:
        return callback.restore(model.trainable_variables)
    except UserError as error:
        return str(error)

restored("residual", save=True)
print(restored("residual"))  # the same graph: resumes after epoch 1
print(restored("batch"))  # another graph in the same folder
"""


def test_a_qat_checkpoint_of_another_graph_is_a_clear_error(tmp_path):
    folder = tmp_path / "quantized" / "qat-checkpoints" / "free"
    done = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_CHECK, str(folder)], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    same, message = done.stdout.strip().splitlines()[-2:]
    assert same == "1"
    assert message.startswith(f"{folder / 'ckpt-1'}: a QAT checkpoint of another graph")
    assert f"delete {tmp_path / 'quantized'} and rerun with --resume" in message
