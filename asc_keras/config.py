"""Typed configuration: one dataclass per section, loaded from YAML with strict checking.

Every default lives here. Loading refuses unknown keys and values of the wrong type, naming the
key, the value and the file, so a typo never silently falls back to a default.
"""

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from asc_keras.errors import UserError
from asc_keras.utils import atomic_write_text


class ConfigError(UserError, ValueError):
    """A configuration file or value that cannot be used."""


@dataclasses.dataclass
class DataConfig:
    """Where the dataset is and how clips are read."""

    root: str | None = None  # folder with meta.csv; or --data-root, or ASC_DATA_ROOT
    cache_dir: str | None = None  # decoded-waveform caches; default <root>/asc_keras_cache
    train_split: str = "train"  # train, or a DCASE24 subset split5..split100
    eval_split: str = "evaluate"
    sample_rate: int = 32000
    duration: float = 1.0


@dataclasses.dataclass
class FrontEndConfig:
    """Log-mel settings; the defaults are the paper's (CP-JKU DCASE23 front end)."""

    n_fft: int = 4096
    win_length: int = 3072
    hop_length: int = 500
    n_mels: int = 256
    fmin: float = 0.0
    fmax: float = 16000.0
    htk: bool = False
    log_offset: float = 1e-5


@dataclasses.dataclass
class DeviceImpulseResponseConfig:
    """DIR (energy_threshold null) or ADIR (a number, or "auto" = mean training energy)."""

    enabled: bool = True
    folder: str | None = None  # WAV impulse responses; relative paths are under data.root
    devices: list[str] = dataclasses.field(default_factory=lambda: ["a"])
    probability: float = 0.6
    energy_threshold: float | typing.Literal["auto"] | None = None


@dataclasses.dataclass
class FreqMixStyleConfig:
    probability: float = 0.4
    alpha: float = 0.3
    epsilon: float = 1e-6


@dataclasses.dataclass
class AugmentConfig:
    time_roll: int = 4000  # largest |shift| in samples; 0 turns it off
    freq_mask: int = 48  # widest mask in mel bins; 0 turns it off
    dir: DeviceImpulseResponseConfig = dataclasses.field(
        default_factory=DeviceImpulseResponseConfig
    )
    freq_mixstyle: FreqMixStyleConfig = dataclasses.field(default_factory=FreqMixStyleConfig)


@dataclasses.dataclass
class ModelConfig:
    architecture: typing.Literal["ds_flexinet", "cp_resnet"] = "ds_flexinet"
    variant: typing.Literal["sm1", "sm2", "sm3", "sm4"] = "sm2"  # ds_flexinet size
    width: int = 24  # cp_resnet base channels (24: about 135 K parameters)
    norm: typing.Literal["residual", "batch", "none"] = "residual"
    rn_axis: typing.Literal["channel", "frequency"] = "channel"
    num_classes: int = 10


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = 250
    batch_size: int = 256
    seed: int = 0
    optimizer: typing.Literal["adam", "adamw"] = "adam"
    learning_rate: float = 0.005  # peak, after warm-up
    weight_decay: float = 0.0  # adamw only
    warmup_epochs: int = 10  # linear warm-up from 0, then cosine decay
    final_lr_fraction: float = 0.01  # cosine decay ends at learning_rate * this
    validate_every: int = 1  # epochs between evaluations on data.eval_split (0: never)


@dataclasses.dataclass
class DistillationConfig:
    """Knowledge distillation from teacher logits (paper eq. 5)."""

    enabled: bool = True
    temperature: float = 2.0
    label_weight: float = 0.02  # lambda at the first epoch
    label_weight_end: float = 0.02  # lambda at the last epoch (linear / cosine schedules)
    label_weight_schedule: typing.Literal["constant", "linear", "cosine"] = "constant"
    compare_without_teacher: bool = False  # also train the student on labels alone


@dataclasses.dataclass
class TeachersConfig:
    """Where teacher logits come from: files made elsewhere and/or teachers trained here."""

    logit_files: list[str] = dataclasses.field(default_factory=list)  # .npz / .csv
    train_count: int = 0  # teachers to train here, seeds training.seed + 0, 1, ...
    config: str | None = None  # their config file (relative: to this config's folder)
    fusion: typing.Literal["averaged", "fused"] = "fused"


@dataclasses.dataclass
class QuantizationConfig:
    """QAT fine-tuning of the float student and the int8 TFLite export (paper III-C)."""

    enabled: bool = True
    epochs: int = 10  # QAT fine-tuning epochs
    freeze_epochs: int = 2  # of those, the last ones with frozen BN statistics and ranges
    learning_rate: float = 1e-5  # QAT fine-tuning; the demo settings measured: README
    representative_batches: int = 8  # training-pipeline batches that calibrate the converter
    micro_check_inputs: int = 100  # evaluation clips run through TFLite Micro


@dataclasses.dataclass
class DistributionConfig:
    """How training is spread over devices and machines (README, "Scaling out").

    training.batch_size is always the global batch: it is split evenly over all replicas.
    """

    strategy: typing.Literal["none", "mirrored", "multi_worker", "data_parallel"] = "none"
    # mirrored / data_parallel: the devices to use, e.g. ["/gpu:0", "/gpu:1"] (TensorFlow)
    # or ["gpu:0", "gpu:1"] (JAX); empty: every local GPU (mirrored; the CPU if none) or
    # every JAX device (data_parallel).
    devices: list[str] = dataclasses.field(default_factory=list)
    # The peak learning rate used is training.learning_rate * f(batch_size /
    # reference_batch_size), f = 1 (none), the ratio (linear) or its square root (sqrt).
    learning_rate_scaling: typing.Literal["none", "linear", "sqrt"] = "none"
    reference_batch_size: int = 256
    sync_batch_norm: bool = True  # mirrored / multi_worker: BN statistics over the global batch


@dataclasses.dataclass
class Config:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    frontend: FrontEndConfig = dataclasses.field(default_factory=FrontEndConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    teachers: TeachersConfig = dataclasses.field(default_factory=TeachersConfig)
    distillation: DistillationConfig = dataclasses.field(default_factory=DistillationConfig)
    quantization: QuantizationConfig = dataclasses.field(default_factory=QuantizationConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)


def _type_name(tp):
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value, tp, key, source):
    """Checks `value` against the annotation `tp` and returns it converted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail(expected):
        raise ConfigError(f"{source}: key {key!r} has value {value!r}; expected {expected}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"a mapping of {tp.__name__} fields")
        return _from_dict(tp, value, key, source)
    if origin is typing.Literal:
        if value not in args:
            fail(f"one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key, source)
            except ConfigError as error:
                errors.append(error)
        fail(" or ".join(_type_name(a) for a in args))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            fail(f"a list of {_type_name(args[0])}")
        items = [_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _from_dict(cls, data, prefix, source):
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key {where}{unknown[0]!r}"
            f"{f' (and {unknown[1:]})' if unknown[1:] else ''}; valid keys here: {sorted(fields)}"
        )
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _convert(value, hints[name], key, source)
    return cls(**values)


def config_from_dict(data, source="<dict>"):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return _from_dict(Config, data, "", source)


def load_config(path):
    """Loads a YAML config file into a `Config`; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return config_from_dict(data, source=str(path))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config):
    return _plain(dataclasses.asdict(config))


def save_config(config, path):
    """Writes the resolved config atomically (write to a temporary file, then rename)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
