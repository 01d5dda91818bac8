"""Dataclass configs loaded from YAML manifests, with dotted `key.sub=value` overrides.

Why here and not in uae_train: every layer has configs (corpus, eval, train) and uae_data is the
bottom layer, so the loader lives where all of them may import it. Each config dataclass is defined
beside the code it configures and registered under a manifest `kind` so `uae validate` can check
every manifest in the repo without running anything.

A field's help text lives in `field(metadata={"help": ...})`, once (TRL style); nothing else repeats it.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

T = TypeVar("T")

CONFIG_KINDS: dict[str, type] = {}


from uae_data.core.errors import ConfigError  # noqa: E402  (re-exported: callers import it from here)


def config_kind(name: str) -> Callable[[type[T]], type[T]]:
    """Register a dataclass as the schema of manifests whose `kind:` is `name`."""

    def register(cls: type[T]) -> type[T]:
        CONFIG_KINDS[name] = cls
        return cls

    return register


def help_field(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:
    """A dataclass field with help text; mutable defaults are wrapped in a factory."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, at any depth (plain YAML keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"{getattr(self, 'source', '<yaml>')}: line {key_node.start_mark.line + 1}: key "
                                  f"'{key}' is given twice in the same section; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    """Parse a manifest; any YAML error, a key given twice, a folder or a binary file becomes a one-line
    ConfigError naming the file."""
    try:
        loader = _UniqueKeyLoader(Path(path).read_text())
        loader.source = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ConfigError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give a manifest file (.yaml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; give a manifest file (.yaml)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where} invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of fields, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str], source: str = "command line") -> dict:
    """Apply `a.b=value` overrides (value parsed as YAML, so `n=3` is an int) to a nested dict copy."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source}: override {key!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; convert where lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: dict, where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}" if where else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key '{key}'")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as e:
            raise ConfigError(f"{where + ': ' if where else ''}{e}") from None
    return obj


def from_dict(cls: type[T], data: dict, source: str = "<config>") -> T:
    """Build and validate a config; errors name `source` (the manifest path) and the dotted field."""
    try:
        return _build(cls, data, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(cls: type[T], path: Path | None, overrides: list[str] | None = None, kind: str | None = None) -> T:
    """Load a manifest (or defaults when path is None), apply overrides, validate.

    `kind` is the manifest kind the caller expects; a manifest of another kind is refused.
    """
    source = str(path) if path else "<defaults>"
    data = read_yaml(path) if path else {}
    found = data.pop("kind", None)
    if kind is not None and found is not None and found != kind:
        raise ConfigError(f"{source}: kind is '{found}', but this command needs a '{kind}' manifest")
    data = apply_overrides(data, overrides or [], source=f"{source} (override)")
    return from_dict(cls, data, source)


def to_dict(cfg: Any) -> dict:
    """Plain dict of a config (tuples become lists), for YAML/JSON."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def dump_yaml(cfg: Any, kind: str | None = None) -> str:
    data = to_dict(cfg)
    if kind:
        data = {"kind": kind, **data}
    return yaml.safe_dump(data, sort_keys=False)


def validate_manifest(path: Path) -> str:
    """Validate one manifest by its `kind`; returns the kind. Raises ConfigError."""
    data = read_yaml(path)
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(f"{path}: missing required key 'kind' (one of: {', '.join(sorted(CONFIG_KINDS))})")
    if kind not in CONFIG_KINDS:
        raise ConfigError(f"{path}: unknown kind '{kind}' (one of: {', '.join(sorted(CONFIG_KINDS))})")
    load_config(CONFIG_KINDS[kind], path, kind=kind)
    return kind


def require_at_least_one(cfg: Any, *names: str) -> None:
    """The common check, written once: each named integer field is >= 1 (None, an unset optional, passes);
    a ValueError names the first that is not and its value."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def accepted_options(*targets: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """{option name: annotation} a free-form options mapping may hold: the keyword parameters of functions
    and classes (their __init__) and the fields of dataclasses, in the order given, minus `exclude`."""
    import inspect

    accepted: dict[str, Any] = {}
    for target in targets:
        try:
            hints = typing.get_type_hints(target if dataclasses.is_dataclass(target) or not isinstance(target, type)
                                          else target.__init__)
        except Exception:  # noqa: BLE001 - an unresolvable annotation only loses its type check
            hints = {}
        if dataclasses.is_dataclass(target):
            names = [f.name for f in dataclasses.fields(target) if f.init]
        else:
            kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            names = [p.name for p in inspect.signature(target).parameters.values() if p.kind in kinds]
        for name in names:
            if name not in exclude and name not in ("self", "cls"):
                accepted.setdefault(name, hints.get(name, Any))
    return accepted


def check_options(where: str, options: dict, *targets: Any, exclude: tuple[str, ...] = ()) -> dict:
    """Check an options section against what its targets accept (see accepted_options): an unknown key is a
    ConfigError naming `where.key` and the known keys, a value of the wrong type one naming its type.

    Why: sections such as decoder_options are passed as keywords into a constructor; checked here, a typo
    fails `uae validate` in one line instead of a TypeError deep in a run. The accepted names come from the
    constructor itself, so no list of options is kept twice.
    """
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a section (mapping), got {options!r}")
    accepted = accepted_options(*targets, exclude=exclude)
    for key in options:
        if key not in accepted:
            raise ConfigError(f"unknown key '{where}.{key}' (known: {', '.join(sorted(accepted))})")
    return {key: _coerce(value, accepted[key], f"{where}.{key}") for key, value in options.items()}
