"""Typed configuration: one dataclass per section, loaded from YAML with strict checking.

Every default lives here. Loading refuses unknown keys and values of the wrong type, naming the
key, the value and the file, so a typo never silently falls back to a default.
"""

import dataclasses
import types
import typing
from pathlib import Path

import yaml

from asc_keras.utils import atomic_write_text


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


@dataclasses.dataclass
class ModelConfig:
    variant: typing.Literal["sm1", "sm2", "sm3", "sm4"] = "sm2"
    norm: typing.Literal["residual", "batch", "none"] = "residual"
    rn_axis: typing.Literal["channel", "frequency"] = "channel"
    num_classes: int = 10


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)


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
