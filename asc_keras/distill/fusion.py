"""Teacher-logit fusion, paper eq. 4: z_c(x) = sum_s w_s z_{s,c}(x) + b_c.

"averaged" is w_s = 1/S, b = 0. "fused" learns w (one per teacher) and b (one per class) by
minimising the cross-entropy of softmax(z) against the training labels, with L-BFGS from the
averaged solution, so the fused loss on the training split is never above the averaged one.
"""

import numpy as np
import scipy.optimize
import scipy.special

from asc_keras.distill.logits import LogitFileError, TeacherLogits
from asc_keras.evaluation.metrics import device_report

METHODS = ("averaged", "fused")


def _combine(stack, weights, bias):
    return np.tensordot(weights, stack, axes=1) + bias


def cross_entropy(logits, labels):
    log_probs = scipy.special.log_softmax(logits.astype(np.float64), axis=-1)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def fit_fusion(stack, labels, l2=1e-4):
    """Weights (S,) and bias (C,) minimising CE(labels, sum_s w_s stack[s] + b) + l2 |theta|^2.

    `stack` is (teachers, clips, classes). A small L2 term keeps the bias finite on
    separable data; the result starts from, and improves on, the plain average.
    """
    stack = stack.astype(np.float64)
    teachers, clips, classes = stack.shape
    onehot = np.eye(classes)[labels]

    def objective(theta):
        weights, bias = theta[:teachers], theta[teachers:]
        logits = _combine(stack, weights, bias)
        log_probs = scipy.special.log_softmax(logits, axis=-1)
        loss = -np.sum(onehot * log_probs) / clips + l2 * np.sum(theta**2)
        residual = (np.exp(log_probs) - onehot) / clips  # d loss / d logits
        grad_weights = np.einsum("snc,nc->s", stack, residual)
        grad_bias = residual.sum(axis=0)
        return loss, np.concatenate([grad_weights, grad_bias]) + 2 * l2 * theta

    start = np.concatenate([np.full(teachers, 1.0 / teachers), np.zeros(classes)])
    result = scipy.optimize.minimize(
        objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500}
    )
    theta = result.x if result.fun <= objective(start)[0] else start
    return theta[:teachers].astype(np.float32), theta[teachers:].astype(np.float32)


def fuse_teachers(teachers, method, train_filenames=None, train_labels=None):
    """Fuses teacher logit sets over the files all of them cover (the first one's order).

    Returns a `TeacherLogits` whose `extra` holds `fusion_weights` and `fusion_bias`.
    """
    if method not in METHODS:
        raise ValueError(f"unknown fusion method {method!r}; valid: {list(METHODS)}")
    if not teachers:
        raise ValueError("no teacher logit files to fuse")
    reference = teachers[0]
    for teacher in teachers[1:]:
        if teacher.classes != reference.classes:
            raise LogitFileError(f"{teacher.source}: classes differ from {reference.source}")
    filenames = reference.filenames
    stack = np.stack([t.aligned_to(filenames) for t in teachers])
    classes = stack.shape[-1]
    if method == "averaged":
        weights = np.full(len(teachers), 1.0 / len(teachers), np.float32)
        bias = np.zeros(classes, np.float32)
    else:
        if train_filenames is None or train_labels is None:
            raise ValueError("fused teacher logits need the training files and labels")
        train_stack = np.stack([t.aligned_to(train_filenames) for t in teachers])
        weights, bias = fit_fusion(train_stack, np.asarray(train_labels))
    fused = _combine(stack, weights, bias).astype(np.float32)
    return TeacherLogits(
        filenames,
        fused,
        reference.classes,
        source=f"{method}({', '.join(t.source for t in teachers)})",
        extra={"fusion_weights": weights, "fusion_bias": bias, "fusion_method": np.array(method)},
    )


def sharpening_warning(reports, split="evaluate", remedy="teachers.fusion: averaged"):
    """A line when the fused logits of `reports` (fusion_report's) lose more (log loss) than
    the averaged ones on the evaluation split, named `split` in the line, else None. The
    fusion is fitted on the training clips, which the teachers have seen: there its weights
    can grow to make confident logits more confident (their sum above 1), and a student
    distilled from them learns that overconfidence."""
    fused, averaged = (reports.get(f"{name} (evaluate)") for name in ("fused", "averaged"))
    if fused is None or averaged is None or fused["log_loss"] <= averaged["log_loss"]:
        return None
    return (
        f"warning: the fused teacher logits have a higher log loss on {split} than the "
        f"averaged ones ({fused['log_loss']:.3f} > {averaged['log_loss']:.3f}): the fusion, "
        f"fitted on the training clips the teachers learned, sharpens them; "
        f"{remedy} may distil better"
    )


def report_title(train_split, eval_split):
    """The title of fusion_report's table; it names the splits behind the roles when they
    are not the roles' own names."""
    title = "Teacher logits: accuracy (%) per device"
    if (train_split, eval_split) != ("train", "evaluate"):
        title += f" (train: split {train_split!r}, evaluate: split {eval_split!r})"
    return title


def fusion_report(teachers, splits):
    """Averaged and fused logits of `teachers`, and accuracy reports per device of each
    teacher and of both fusions on every split they cover. The reports are keyed
    "<name> (train)" and "<name> (evaluate)" by the split's role in `splits`, whatever the
    config's data.train_split and data.eval_split call them (see report_title)."""
    for teacher in teachers:
        teacher.aligned_to(splits.train.filenames)  # every training clip must be covered
    fused = {
        name: fuse_teachers(teachers, name, splits.train.filenames, splits.labels("train"))
        for name in ("averaged", "fused")
    }
    named = {f"teacher {i}": t for i, t in enumerate(teachers)} | fused
    reports = {}
    for split in ("train", "evaluate"):
        filenames = getattr(splits, split).filenames
        for name, logits in named.items():
            if set(filenames) <= set(logits.filenames):
                reports[f"{name} ({split})"] = device_report(
                    splits.labels(split), logits.aligned_to(filenames), splits.devices(split)
                )
    return fused, reports
