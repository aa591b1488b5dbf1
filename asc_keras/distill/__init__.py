from asc_keras.distill.distiller import (
    DistillationLoss,
    Distiller,
    LabelWeightSchedule,
    distillation_loss,
    label_weight_at,
)
from asc_keras.distill.fusion import fit_fusion, fuse_teachers
from asc_keras.distill.logits import LogitFileError, TeacherLogits, load_logits

__all__ = [
    "DistillationLoss",
    "Distiller",
    "LabelWeightSchedule",
    "LogitFileError",
    "TeacherLogits",
    "distillation_loss",
    "fit_fusion",
    "fuse_teachers",
    "label_weight_at",
    "load_logits",
]
