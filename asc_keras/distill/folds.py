"""Out-of-fold teacher logits (cross-fitting, `teachers.folds: k`).

A teacher trained on the clips it then labels hands the student logits that mostly repeat
the labels. With k folds, each teacher seed is trained k times, each time without one fold of
the training split, and labels only the fold it did not see; its evaluation-split logits are
the mean of its k models.

Folds are grouped by recording place (meta.csv's `identifier`: the clips of one place, the
same segment recorded by several devices among them, are never on both sides), stratified by
class, and fixed by the seed (scikit-learn's `StratifiedGroupKFold`).

Example:
    >>> from asc_keras.data.tau22 import Record
    >>> records = [
    ...     Record(f"audio/{scene}-{city}-{place}-0-{i}-a.wav", label, "a", city, f"{city}-{place}")
    ...     for label, scene in enumerate(["bus", "park"])
    ...     for city, place in [("lyon", 1), ("milan", 2), ("paris", 3), ("prague", 4)]
    ...     for i in range(2)
    ... ]
    >>> folds = fold_assignment(records, 2, seed=0)
    >>> sorted(set(folds.tolist())), int((folds == 0).sum()), int((folds == 1).sum())
    ([0, 1], 8, 8)
"""

import warnings

import numpy as np

from asc_keras.errors import UserError


class FoldError(UserError, ValueError):
    """Folds that cannot be made from the training split (the message says why)."""


def fold_assignment(records, folds, seed):
    """The fold (0 .. folds - 1) of each record of the training split, as an int array."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.array([r.identifier for r in records])
    if len(set(groups)) < folds:
        raise FoldError(
            f"teachers.folds {folds} needs at least {folds} recording places (meta.csv "
            f"identifiers) in the training split; it has {len(set(groups))}"
        )
    labels = np.array([r.label for r in records])
    assignment = np.full(len(records), -1)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer places than folds: still grouped
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held_out) in enumerate(splitter.split(records, labels, groups)):
            assignment[held_out] = fold
    return assignment


def out_of_fold(fold_logits, assignment):
    """The training split's logits, each clip's row from the model of its own fold.

    `fold_logits[f]` holds fold f's model's logits for the clips of fold f, in the split's
    order (`assignment == f`)."""
    rows = np.zeros((len(assignment), fold_logits[0].shape[1]), np.float32)
    for fold, logits in enumerate(fold_logits):
        rows[assignment == fold] = logits
    return rows
