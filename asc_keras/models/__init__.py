from asc_keras.models.cp_resnet import cp_resnet
from asc_keras.models.ds_flexinet import NORMS, VARIANTS, Stage, Variant, ds_flexinet


def build_model(model_config, input_shape=(256, 64, 1)):
    """The model a config's `model` section describes."""
    if model_config.architecture == "cp_resnet":
        return cp_resnet(model_config.num_classes, input_shape, width=model_config.width)
    return ds_flexinet(
        model_config.variant,
        num_classes=model_config.num_classes,
        input_shape=input_shape,
        norm=model_config.norm,
        rn_axis=model_config.rn_axis,
    )


__all__ = ["NORMS", "VARIANTS", "Stage", "Variant", "build_model", "cp_resnet", "ds_flexinet"]
