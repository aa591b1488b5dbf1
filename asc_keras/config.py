"""Typed configuration: one dataclass per section, loaded from YAML with strict checking.

Every default lives here. Loading refuses unknown keys, values of the wrong type and values out
of range (a count below 1, a probability above 1, a NaN rate), naming the key, the value and
the file, so a typo never silently falls back to a default or trains to NaN.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path

import yaml

from asc_keras.errors import UserError
from asc_keras.utils import atomic_write_text, read_text


class ConfigError(UserError, ValueError):
    """A configuration file or value that cannot be used."""


def _ranged(default, minimum=None, maximum=None, above=None):
    """A field whose numbers must be >= minimum, <= maximum and > above (each if given)."""
    return dataclasses.field(
        default=default, metadata={"minimum": minimum, "maximum": maximum, "above": above}
    )


def _count(default, minimum=1):
    return _ranged(default, minimum=minimum)


def _positive(default):
    return _ranged(default, above=0)


def _fraction(default):
    return _ranged(default, minimum=0, maximum=1)


@dataclasses.dataclass
class DataConfig:
    """Where the dataset is and how clips are read."""

    root: str | None = None  # folder with meta.csv; or --data-root, or ASC_DATA_ROOT
    cache_dir: str | None = None  # decoded-waveform caches; default <root>/asc_keras_cache
    train_split: str = "train"  # train, or a DCASE24 subset split5..split100
    eval_split: str = "evaluate"  # the split evaluated after every stage and reported
    sample_rate: int = _count(32000)  # Hz; every clip is resampled to it (soxr)
    duration: float = _positive(1.0)  # seconds per clip: the model's input length
    # A split whose waveforms need more than this many GB in memory (twice the cache while
    # loading) is streamed from per-clip files (0: always stream); null: half the memory
    # available when training starts.
    memory_budget_gb: float | None = _ranged(None, minimum=0)


@dataclasses.dataclass
class FrontEndConfig:
    """Log-mel settings; the defaults are the paper's (32 kHz, 4096-point FFT, 3072-sample
    window, hop 500, 256 mel bins). Not CP-JKU's DCASE23 front end, which adds pre-emphasis,
    Kaldi mel banks and another normalisation: their logits carry over, their checkpoints
    do not."""

    n_fft: int = _count(4096)  # FFT length in samples
    win_length: int = _count(3072)  # at most n_fft
    hop_length: int = _count(500)  # samples between frames (500: 64 frames per second)
    n_mels: int = _count(256)  # mel bins: the model's input height
    fmin: float = _ranged(0.0, minimum=0)  # lowest mel frequency, Hz
    fmax: float = _positive(16000.0)  # above fmin, at most sample_rate / 2
    htk: bool = False  # HTK mel scale instead of Slaney's
    log_offset: float = _positive(1e-5)  # the log-mel is log(mel + log_offset)


@dataclasses.dataclass
class DeviceImpulseResponseConfig:
    """DIR (energy_threshold null) or ADIR (a number, or "auto" = mean training energy)."""

    enabled: bool = True  # DIR / ADIR on the listed devices' clips
    folder: str | None = None  # WAV impulse responses; relative paths are under data.root
    # the devices whose clips are convolved (the paper: device A only)
    devices: list[str] = dataclasses.field(default_factory=lambda: ["a"])
    probability: float = _fraction(0.6)  # per clip of those devices
    # null: DIR; a number or "auto" (the training split's mean energy): ADIR's tau
    energy_threshold: float | typing.Literal["auto"] | None = _ranged(None, minimum=0)


@dataclasses.dataclass
class FreqMixStyleConfig:
    probability: float = _fraction(0.4)  # per batch
    alpha: float = _positive(0.3)  # mixing weights ~ Beta(alpha, alpha)
    epsilon: float = _positive(1e-6)  # added to the variance of each frequency bin


@dataclasses.dataclass
class AugmentConfig:
    time_roll: int = _count(4000, minimum=0)  # largest |shift| in samples; 0 turns it off
    freq_mask: int = _count(48, minimum=0)  # widest mask in mel bins; 0 turns it off
    dir: DeviceImpulseResponseConfig = dataclasses.field(
        default_factory=DeviceImpulseResponseConfig
    )
    freq_mixstyle: FreqMixStyleConfig = dataclasses.field(default_factory=FreqMixStyleConfig)


@dataclasses.dataclass
class ModelConfig:
    # ds_flexinet: the student; cp_resnet: the teacher
    architecture: typing.Literal["ds_flexinet", "cp_resnet"] = "ds_flexinet"
    variant: typing.Literal["sm1", "sm2", "sm3", "sm4"] = "sm2"  # ds_flexinet size
    width: int = _count(24)  # cp_resnet base channels (24: about 135 K parameters)
    # the stage normalisation (paper Table V)
    norm: typing.Literal["residual", "batch", "none"] = "residual"
    # RN statistics per channel or per bin
    rn_axis: typing.Literal["channel", "frequency"] = "channel"
    num_classes: int = _count(10, minimum=2)  # scene classes (TAU22: 10)


@dataclasses.dataclass
class TrainingConfig:
    epochs: int = _count(250)  # training epochs of the stage
    batch_size: int = _count(256)  # the global batch (split over replicas when distributed)
    seed: int = _count(0, minimum=0)  # initial weights, shuffling and augmentation draws
    optimizer: typing.Literal["adam", "adamw"] = "adam"  # Adam, or AdamW with weight_decay
    learning_rate: float = _positive(0.005)  # peak, after warm-up
    weight_decay: float = _ranged(0.0, minimum=0)  # adamw only
    warmup_epochs: int = _count(10, minimum=0)  # linear warm-up from 0, then cosine decay
    final_lr_fraction: float = _fraction(0.01)  # cosine decay ends at learning_rate * this
    validate_every: int = _count(1, minimum=0)  # epochs between evaluations (0: never)
    # Deterministic kernels (TensorFlow op determinism, PyTorch deterministic algorithms):
    # two runs of one config on one machine give the same weights, byte for byte.
    deterministic: bool = True


@dataclasses.dataclass
class DistillationConfig:
    """Knowledge distillation from teacher logits (paper eq. 5)."""

    enabled: bool = True  # distil from teacher logits (false: labels only)
    temperature: float = _positive(2.0)  # T of eq. 5
    label_weight: float = _fraction(0.02)  # lambda at the first epoch
    label_weight_end: float = _fraction(0.02)  # lambda at the last epoch (linear / cosine)
    # how lambda moves from label_weight to label_weight_end
    label_weight_schedule: typing.Literal["constant", "linear", "cosine"] = "constant"
    compare_without_teacher: bool = False  # also train the student on labels alone


@dataclasses.dataclass
class TeachersConfig:
    """Where teacher logits come from: files made elsewhere and/or teachers trained here."""

    logit_files: list[str] = dataclasses.field(default_factory=list)  # .npz / .csv
    train_count: int = _count(0, minimum=0)  # teachers to train here, seeds seed + 0, 1, ...
    config: str | None = None  # their config file (relative: to this config's folder)
    # averaged (w = 1/S) or fused (eq. 4, fitted)
    fusion: typing.Literal["averaged", "fused"] = "fused"
    # Out-of-fold logits: each teacher trains `folds` times, each time without one fold of
    # the training split (grouped by recording place, stratified by class), and labels the
    # fold it did not see; 1: every teacher labels the clips it trained on.
    folds: int = _count(1)


@dataclasses.dataclass
class QuantizationConfig:
    """QAT fine-tuning of the float student and the int8 TFLite export (paper III-C)."""

    enabled: bool = True  # QAT and the int8 export after the float stages
    epochs: int = _count(10, minimum=0)  # QAT fine-tuning epochs (0: calibration only)
    freeze_epochs: int = _count(2, minimum=0)  # of those, the last ones with frozen BN / ranges
    learning_rate: float = _positive(1e-5)  # QAT fine-tuning (configs/demo.yaml: 3e-5)
    representative_batches: int = _count(8)  # training batches that calibrate the converter
    micro_check_inputs: int = _count(100, minimum=0)  # evaluation clips run by TFLite Micro
    # The float student that becomes int8: the distilled one, the one trained without a
    # teacher (distillation.compare_without_teacher), or the better of the two on the
    # evaluate split.
    student: typing.Literal["distilled", "without_teacher", "best"] = "distilled"


@dataclasses.dataclass
class DeviceModelsConfig:
    """DCASE 2025 Task 1: after the general student, one fine-tuned copy of it per listed
    training device, trained on that device's clips alone, each through QAT to its own int8
    model. A clip of a listed device is then classified by its device model, any other by
    the general one (docs/dcase2025.md)."""

    # training devices that get their own model, e.g. [a, b, c, s1, s2, s3]; empty: none
    devices: list[str] = dataclasses.field(default_factory=list)
    epochs: int = _count(50)  # fine-tuning epochs of each device model
    batch_size: int | None = _ranged(None, minimum=1)  # null: training.batch_size
    learning_rate: float = _positive(5e-4)  # peak, after warm-up (then cosine decay)
    warmup_epochs: int = _count(1, minimum=0)  # linear warm-up from 0
    # fine-tune from the run's teacher logits (when distillation.enabled; false: labels only)
    distilled: bool = True


@dataclasses.dataclass
class DistributionConfig:
    """How training is spread over devices and machines (docs/training.md, "Scaling out").

    training.batch_size is always the global batch: it is split evenly over all replicas.
    """

    # none: one device; the others: docs/training.md, Scaling out
    strategy: typing.Literal["none", "mirrored", "multi_worker", "data_parallel"] = "none"
    # mirrored / data_parallel: the devices to use, e.g. ["/gpu:0", "/gpu:1"] (TensorFlow)
    # or ["gpu:0", "gpu:1"] (JAX); empty: every local GPU (mirrored; the CPU if none) or
    # every JAX device (data_parallel).
    devices: list[str] = dataclasses.field(default_factory=list)
    # The peak learning rate used is training.learning_rate * f(batch_size /
    # reference_batch_size), f = 1 (none), the ratio (linear) or its square root (sqrt).
    learning_rate_scaling: typing.Literal["none", "linear", "sqrt"] = "none"
    reference_batch_size: int = _count(256)  # the batch the learning rate was tuned for
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
    device_models: DeviceModelsConfig = dataclasses.field(default_factory=DeviceModelsConfig)
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
        if not math.isfinite(value):
            fail("a finite number")
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


def refuse_unknown_keys(data, valid, source, prefix=""):
    """A ConfigError naming the first key of the mapping `data` that is not in `valid` (and
    the others), and the valid keys."""
    unknown = sorted(map(str, set(data) - set(valid)))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"{source}: unknown key {where}{unknown[0]!r}"
            f"{f' (and {unknown[1:]})' if unknown[1:] else ''}; valid keys here: {sorted(valid)}"
        )


def _from_dict(cls, data, prefix, source):
    hints = typing.get_type_hints(cls)
    refuse_unknown_keys(data, [f.name for f in dataclasses.fields(cls)], source, prefix)
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in data:
            key = f"{prefix}.{field.name}" if prefix else field.name
            values[field.name] = _convert(data[field.name], hints[field.name], key, source)
            _check_range(values[field.name], field.metadata, key, source)
    return cls(**values)


def _check_range(value, limits, key, source):
    if not limits or isinstance(value, (str, bool)) or value is None:
        return
    minimum, maximum, above = limits["minimum"], limits["maximum"], limits["above"]
    if minimum is not None and maximum is not None:
        expected, ok = f"a value in [{minimum}, {maximum}]", minimum <= value <= maximum
    elif minimum is not None:
        expected, ok = f"a value >= {minimum}", value >= minimum
    else:
        expected, ok = f"a value > {above}", value > above
    if not ok:
        raise ConfigError(f"{source}: key {key!r} has value {value!r}; expected {expected}")


def _check_relations(config, source):
    """Checks between keys, each naming both keys and their values."""
    frontend, quantization = config.frontend, config.quantization
    relations = [
        (
            quantization.freeze_epochs <= quantization.epochs,
            f"quantization.freeze_epochs ({quantization.freeze_epochs}) is more than "
            f"quantization.epochs ({quantization.epochs}); it counts the last of those epochs",
        ),
        (
            quantization.student == "distilled"
            or not config.distillation.enabled
            or config.distillation.compare_without_teacher,
            f"quantization.student {quantization.student!r} needs "
            f"distillation.compare_without_teacher: true (the student without a teacher is "
            f"trained only then)",
        ),
        (
            frontend.win_length <= frontend.n_fft,
            f"frontend.win_length ({frontend.win_length}) is longer than frontend.n_fft "
            f"({frontend.n_fft})",
        ),
        (
            frontend.fmin < frontend.fmax <= config.data.sample_rate / 2,
            f"frontend.fmin ({frontend.fmin}) and fmax ({frontend.fmax}) must satisfy "
            f"fmin < fmax <= data.sample_rate / 2 ({config.data.sample_rate / 2})",
        ),
    ]
    for ok, message in relations:
        if not ok:
            raise ConfigError(f"{source}: {message}")
    _check_device_models(config.device_models, source)


def _check_device_models(device_models, source):
    """Each listed device a TAU22 training device, listed once."""
    from asc_keras.data.tau22 import DEVICES, UNSEEN_DEVICES

    training = [d for d in DEVICES if d not in UNSEEN_DEVICES]
    for device in device_models.devices:
        if device not in training:
            raise ConfigError(
                f"{source}: key 'device_models.devices' lists {device!r}; expected training "
                f"devices among {training} (unseen devices have no training clips)"
            )
        if device_models.devices.count(device) > 1:
            raise ConfigError(
                f"{source}: key 'device_models.devices' lists {device!r} twice; give each once"
            )


def config_from_dict(data, source="<dict>"):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    config = _from_dict(Config, data, "", source)
    _check_relations(config, source)
    return config


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line, first_line):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key that appears twice in one mapping (plain PyYAML
    keeps the last value silently)."""

    def construct_mapping(self, node, deep=False):
        first_lines = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_lines.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if first != key_node.start_mark.line + 1:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, first)
        return super().construct_mapping(node, deep)


def read_yaml(path, what="config file"):
    """The parsed content of a YAML file; a missing file, invalid YAML, a key given twice in
    one section or a byte that is not UTF-8 is a ConfigError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist")
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except _DuplicateKey as error:
        raise ConfigError(
            f"{path}, line {error.line}: key {error.key!r} appears twice in one section (first "
            f"on line {error.first_line}); give each key once"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error


def with_overrides(data, overrides, source="config"):
    """The plain config dict `data` with each `KEY=VALUE` of `overrides` set (a `--set` flag
    on the command line): KEY a dotted path (`training.epochs`), VALUE read as YAML (`5`,
    `null`, `[a, b]`). Each is checked as it is applied, and an error names the flag."""
    data = _plain(data or {})
    config_from_dict(data, source)  # the file's own errors name the file, not a flag
    for item in overrides:
        flag = f"--set {item}"
        key, sep, text = item.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ConfigError(
                f"{flag}: expected KEY=VALUE with a dotted key, e.g. training.epochs=5"
            )
        try:
            value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as error:
            raise ConfigError(f"{flag}: the value is not valid YAML: {error}") from None
        section = data
        for depth, name in enumerate(path[:-1]):
            section = section.setdefault(name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{flag}: {'.'.join(path[: depth + 1])} is not a section")
        section[path[-1]] = value
        config_from_dict(data, flag)
    return data


def load_config(path, overrides=()):
    """Loads a YAML config file into a `Config`, with `overrides` (`--set KEY=VALUE` items)
    applied; errors name the file, or the flag, and the key."""
    data = read_yaml(path)
    if overrides:
        data = with_overrides(data, overrides, source=str(path))
    return config_from_dict(data, source=str(path))


def add_set_argument(parser):
    """The `--set KEY=VALUE` flag (repeatable) of the tools that load a config."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="change one config key, e.g. --set training.epochs=5 (repeatable; docs/config.md)",
    )


def with_resolved_paths(config, config_path=None):
    """`config` with every path it names made absolute, as a run folder keeps it: the
    teacher config (relative to the folder of `config_path`, the file that names it), the
    teacher-logit files and the cache folder (relative to the working folder). The same file
    named two ways is then one value, and a run folder's config.yaml works from anywhere."""
    teachers, data = config.teachers, config.data
    teacher_config = teachers.config
    if teacher_config and config_path is not None:
        teacher_config = str((Path(config_path).parent / teacher_config).resolve())
    teachers = dataclasses.replace(
        teachers,
        config=teacher_config,
        logit_files=[str(Path(f).resolve()) for f in teachers.logit_files],
    )
    cache_dir = data.cache_dir and str(Path(data.cache_dir).resolve())
    return dataclasses.replace(
        config, teachers=teachers, data=dataclasses.replace(data, cache_dir=cache_dir)
    )


def device_model_config(config):
    """The config a device model trains with: config.training with device_models' epochs,
    learning rate, warm-up and batch size."""
    device_models = config.device_models
    training = dataclasses.replace(
        config.training,
        epochs=device_models.epochs,
        learning_rate=device_models.learning_rate,
        warmup_epochs=device_models.warmup_epochs,
        batch_size=device_models.batch_size or config.training.batch_size,
    )
    return dataclasses.replace(config, training=training)


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
