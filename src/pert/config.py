"""Dataclass configs filled from YAML and command-line flags, validated once.

A config class is a plain dataclass; each field's ``metadata["help"]`` is its one-line help. The CLI
is generated from the fields (``add_config_args``), so a flag always has the field's name with
dashes (``max_seq_len`` -> ``--max-seq-len``). Precedence: defaults < YAML file < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")

# One meaning everywhere: every verb that runs a model takes these.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = ("auto: bf16 autocast where the hardware has it (CUDA with bf16, CPUs with AVX512-BF16/AMX), "
                  "else fp32; fp32: exact; bf16/fp16: autocast (fp16 needs a GPU)")
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"
INFERENCE_PRECISION_HELP = ("auto: the model's fine-tuning precision where the device runs it well, else fp32; "
                            "fp32: exact; bf16/fp16: autocast (fp16 needs a GPU)")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the field."""


def field(default: Any = dataclasses.MISSING, help: str = "", choices: tuple[str, ...] | None = None,
          required: bool = False, **kw: Any) -> Any:
    """A dataclass field with a help line, optional choices (listed by ``--help``, checked by argparse) and
    ``required`` (shown as required; the config's ``__post_init__`` still checks it, as YAML may give it)."""
    meta = {"help": help, "choices": choices, "required": required}
    if isinstance(default, list | dict | tuple):
        value = default
        kw["default_factory"] = lambda: type(value)(value)
        return dataclasses.field(metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(element type, is_sequence) of a field annotation; Optional is unwrapped."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin in (list, tuple):
        return typing.get_args(tp)[0], True
    return tp, False


def _help(f: dataclasses.Field, default: Any) -> str:
    """The field's help plus its default, unless the help already says it or there is nothing to say."""
    text = f.metadata.get("help", "")
    if not f.metadata.get("required") and "default" not in text and default not in (None, False, [], ""):
        shown = " ".join(map(str, default)) if isinstance(default, list) else "on" if default is True else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")  # argparse formats help


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field; flags default to None so that YAML values survive. Required fields
    are listed in their own group."""
    hints = typing.get_type_hints(cls)
    required = parser.add_argument_group("required (on the command line or in --config)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, seq = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        group = required if f.metadata.get("required") else parser
        if tp is bool:
            group.add_argument(_flag(f.name), dest=f.name, default=None,
                               action=argparse.BooleanOptionalAction, help=_help(f, default))
        else:
            group.add_argument(_flag(f.name), dest=f.name, default=None, type=tp, choices=f.metadata.get("choices"),
                               nargs="+" if seq else None, help=_help(f, default))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config values; errors name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path}: not found") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of option: value, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[C], yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Defaults < YAML < overrides (None values in overrides are ignored). Unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if yaml_path:
        data = load_yaml(yaml_path)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"config file {yaml_path}: unknown option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(names))}")
        values.update(data)
    for k, v in (overrides or {}).items():
        if v is None:
            continue
        if k not in names:
            raise ConfigError(f"unknown option {k}")
        values[k] = v
    hints = typing.get_type_hints(cls)
    for k, v in list(values.items()):
        values[k] = _coerce(k, v, hints[k])
    try:
        return cls(**values)
    except TypeError as e:  # a required field without value
        raise ConfigError(str(e)) from e


def _coerce(name: str, value: Any, tp: Any) -> Any:
    base, seq = _base_type(tp)
    if value is None:
        return None
    try:
        if seq:
            if not isinstance(value, list | tuple):
                raise TypeError
            return [base(v) for v in value]
        if base is bool and not isinstance(value, bool):
            raise TypeError
        if base is float and isinstance(value, int | float | str):
            return float(value)
        if base is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if base in (int, str) and not isinstance(value, base):
            raise TypeError
        return value
    except (TypeError, ValueError) as e:
        want = f"a list of {base.__name__}" if seq else base.__name__
        raise ConfigError(f"option {_flag(name)}: expected {want}, got {value!r}") from e


def check(cond: bool, name: str, message: str) -> None:
    """Raise a ConfigError naming the flag when ``cond`` is false."""
    if not cond:
        raise ConfigError(f"{_flag(name)} {message}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-ready dict of a config."""
    return dataclasses.asdict(cfg)
