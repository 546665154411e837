"""The one strict reader of typed configs: YAML into dataclasses, for the campaign spec and the trainer config.

Dataclasses hold every default; the YAML only overrides them. Reading is strict, and every problem is one
line naming the file, the dotted key and, for YAML errors, the line: a key given twice in one mapping, bytes
that are not UTF-8, an unknown key, a required key left out, a value of the wrong type (`yes`, `1.10` and
`0755` for a string must be quoted, since YAML would not keep what the user typed). Each caller raises its
own subclass of `StrictError` (the spec's SpecError, the trainer's ConfigError), so its CLI can say which
file is wrong.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class StrictError(ValueError):
    """A user-facing problem with a config file (one line, exit code 2)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML would keep the last one silently,
    and the user would run with a value they did not see. Keys merged in with `<<:` may be overridden."""


def _no_duplicate_keys(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = key in first
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {first[key] + 1}); keep one",
                key_node.start_mark)
        first[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def parse_yaml(text: str) -> Any:
    """`text` as YAML, strictly (no duplicate keys); raises yaml.YAMLError or RecursionError."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: Path, error: type[StrictError] = StrictError) -> Any:
    """The YAML document in `path`; bad bytes, bad syntax or a duplicate key is an `error` naming the file
    and the line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e}); pass a readable YAML file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise error(f"{path}: line {line}: byte 0x{data[e.start]:02x} is not UTF-8 text; save the file as UTF-8") \
            from None
    try:
        return parse_yaml(text)
    except (yaml.YAMLError, RecursionError) as e:
        line, problem = yaml_problem(e, text)
        if problem.startswith("duplicate key"):
            raise error(f"{path}: line {line}: {problem}") from None
        where = f" line {line}" if line else ""
        raise error(f"{path}:{where} is not valid YAML ({problem})") from None


def yaml_problem(e: Exception, text: str = "") -> tuple[int | None, str]:
    """(line, what) in one line, from whichever kind of error PyYAML raised."""
    if isinstance(e, RecursionError):  # PyYAML's composer recurses once per nesting level
        return None, "nested too deeply"
    if isinstance(e, yaml.reader.ReaderError):  # a control character or the like: a position, no mark
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        return text[:e.position].count("\n") + 1, f"{e.reason}: {char}"
    mark = getattr(e, "problem_mark", None)
    return (mark.line + 1 if mark else None), " ".join(str(getattr(e, "problem", None) or e).split())


def check_keys(mapping: Any, allowed: set[str], where: str) -> None:
    """For playbooks read as plain mappings: a ValueError naming the first key not in `allowed`."""
    if not isinstance(mapping, dict):
        raise ValueError(f"{where}: expected a mapping")
    for key in mapping:
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")


# a section's raw mapping before it is read (the trainer's `model: {preset: tiny}` expands here)
Expand = Callable[[type, dict[str, Any], str], dict[str, Any]]


def build(cls: type, raw: Any, prefix: str, error: type[StrictError] = StrictError,
          expand: Expand | None = None) -> Any:
    """The dataclass `cls` from a YAML mapping, strictly. An empty section (`budget:`) means all defaults; a
    missing required section reports its first missing key (`launch.command: required`). `__post_init__`
    raises `error` naming keys from the root (it knows its section)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{prefix.rstrip('.') or 'top level'}: expected a mapping, got {raw!r} ({type(raw).__name__})")
    if expand is not None:
        raw = expand(cls, dict(raw), prefix)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise error(f"{prefix}{key}: unknown key (known keys here: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        hint = hints[name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in raw:
            if not required:
                continue
            if not dataclasses.is_dataclass(hint):
                raise error(f"{prefix}{name}: required")
        value = raw.get(name)
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, f"{prefix}{name}.", error, expand)
        else:
            kwargs[name] = coerce_value(value, hint, f"{prefix}{name}", error)
    return cls(**kwargs)


def coerce_value(value: Any, hint: Any, key: str, error: type[StrictError] = StrictError) -> Any:
    """`value` (as YAML parsed it) checked against the type `hint`; an `error` naming `key` otherwise."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer literal with hundreds of digits
                raise error(f"{key}: an integer of {len(str(value))} digits is too large for a float") from None
        if isinstance(value, str):  # YAML 1.1 reads "1e3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float, bool)):
            # `yes`, `1.10` and `0755` do not survive YAML as the text the user typed: make them quote it
            raise error(f"{key}: expected str, got {value!r} ({type(value).__name__}); quote it in the YAML")
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [coerce_value(v, item, f"{key}[{i}]", error) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, vt = typing.get_args(hint)
            return {str(k): coerce_value(v, vt, f"{key}.{k}", error) for k, v in value.items()}
    elif hint is dict:
        if isinstance(value, dict):
            return value
    elif origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return coerce_value(value, arm, key, error)
            except StrictError:
                continue
    else:
        raise AssertionError(f"unsupported config type {hint} at {key}")
    raise error(f"{key}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return f"a list of {_type_name(args[0])}"
    if typing.get_origin(hint) is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    return getattr(hint, "__name__", str(hint))
