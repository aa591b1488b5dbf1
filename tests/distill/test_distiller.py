import copy

import keras
import numpy as np
import pytest

from asc_keras import ds_flexinet
from asc_keras.distill import Distiller, LabelWeightSchedule, distillation_loss, label_weight_at

pytestmark = pytest.mark.multi_backend


def numpy_eq5(labels, student, teacher, lam, temperature):
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    hard = -log_softmax(student)[np.arange(len(labels)), labels]
    p_teacher = np.exp(log_softmax(teacher / temperature))
    kl = np.sum(
        p_teacher * (log_softmax(teacher / temperature) - log_softmax(student / temperature)),
        axis=1,
    )
    return lam * hard + (1 - lam) * temperature**2 * kl


@pytest.mark.parametrize("lam, temperature", [(0.02, 2.0), (0.5, 1.0), (1.0, 3.0), (0.0, 4.0)])
def test_loss_is_paper_eq5_in_numpy(lam, temperature):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 6)
    student, teacher = rng.normal(0, 3, (2, 6, 10)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(distillation_loss(labels, student, teacher, lam, temperature))
    expected = numpy_eq5(
        labels, student.astype(np.float64), teacher.astype(np.float64), lam, temperature
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_kd_term_vanishes_when_student_equals_teacher():
    logits = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    loss = distillation_loss(np.zeros(4, int), logits, logits, 0.0, 2.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("constant", [0.9, 0.9, 0.9, 0.9, 0.9]),
        ("linear", [0.9, 0.7, 0.5, 0.3, 0.1]),
        (
            "cosine",
            [
                0.9,
                0.1 + 0.8 * (1 + np.cos(np.pi / 4)) / 2,
                0.5,
                0.1 + 0.8 * (1 + np.cos(3 * np.pi / 4)) / 2,
                0.1,
            ],
        ),
    ],
)
def test_lambda_follows_the_schedule(schedule, expected):
    values = [label_weight_at(epoch, 5, schedule, 0.9, 0.1) for epoch in range(5)]
    np.testing.assert_allclose(values, expected, atol=1e-9)


def test_distiller_trains_with_the_schedule_and_exports_the_student(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 64, 32, 1)).astype(np.float32)  # any input size shows this
    targets = {"label": rng.integers(0, 10, 16), "teacher_logits": rng.normal(size=(16, 10))}
    student = ds_flexinet("sm1", input_shape=x.shape[1:])
    distiller = Distiller(student, temperature=2.0, label_weight=0.5)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(
        x,
        targets,
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[LabelWeightSchedule(3, "linear", 0.9, 0.1)],
    )
    np.testing.assert_allclose(history.history["label_weight"], [0.9, 0.5, 0.1], atol=1e-6)
    assert np.all(np.isfinite(history.history["loss"])) and "accuracy" in history.history
    path = tmp_path / "student.keras"
    distiller.student.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), distiller.predict(x, verbose=0), atol=1e-5
    )


def test_missing_teacher_logits_is_a_clear_error():
    distiller = Distiller(ds_flexinet("sm1"))
    distiller.compile(optimizer="adam")
    x = np.zeros((4, 256, 64, 1), np.float32)
    with pytest.raises(ValueError, match="teacher_logits"):
        distiller.fit(x, np.zeros(4, int), verbose=0)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(ds_flexinet("sm1"), temperature=0.0)


def test_a_saved_distiller_loads_with_the_same_loss_and_resumes_from_weights(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 256, 64, 1)).astype(np.float32)
    targets = {"label": rng.integers(0, 10, 8), "teacher_logits": rng.normal(size=(8, 10))}
    distiller = Distiller(ds_flexinet("sm1"), temperature=3.0, label_weight=0.25)
    config = distiller.get_config()
    before = copy.deepcopy(config)

    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded, Distiller) and loaded.temperature == 3.0
    assert float(keras.ops.convert_to_numpy(loaded.label_weight)) == pytest.approx(0.25)
    loss = keras.ops.convert_to_numpy(distiller.compute_loss(x, targets, distiller(x)))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded.compute_loss(x, targets, loaded(x))), loss, rtol=1e-6
    )
    # from_config builds the same Distiller and leaves the config as it was.
    rebuilt = Distiller.from_config(config)
    assert config == before
    assert rebuilt.temperature == 3.0 and rebuilt.student.count_params() == (
        distiller.student.count_params()
    )

    # A new Distiller is built from the start: a checkpoint loads before any batch (resume).
    distiller.save_weights(tmp_path / "distiller.weights.h5")
    fresh = Distiller(ds_flexinet("sm1"), temperature=3.0, label_weight=0.9)
    fresh.load_weights(tmp_path / "distiller.weights.h5")
    assert float(keras.ops.convert_to_numpy(fresh.label_weight)) == pytest.approx(0.25)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fresh(x)), keras.ops.convert_to_numpy(distiller(x)), atol=1e-5
    )
