from asc_keras.models.ds_flexinet import NORMS, VARIANTS, Stage, Variant, ds_flexinet

__all__ = ["NORMS", "VARIANTS", "Stage", "Variant", "ds_flexinet"]
