"""fedcore's TOML reader: tables read into dataclasses, keys and types checked by name.

A dataclass field is a TOML key; a dataclass-typed field (or `X | None`) is a nested table; a
field with `SWITCHED` metadata is a table that `enabled = true` turns on. Unknown, moved and
missing keys and bad values fail with the key's dotted name (`section.key`).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from fedcore.errors import FedcoreError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fedcore.engine.config import SecureAggregationConfig
from fedcore.secagg.roster import Roster, RosterError
from fedcore.storage.identity_files import load_roster

T = TypeVar("T")


class ConfigError(FedcoreError, ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


# [secagg] is read straight into `SecureAggregationConfig` (`[secagg.dp]` into its
# `DistributedDPConfig`, `roster` a path to a `Roster`): a field with this metadata is a table
# that `enabled = true` turns on; off, the field is None.
SWITCH = "enabled"
SWITCHED = {"switch": SWITCH}
# Domain fields whose TOML key is shorter: (dataclass, TOML key) -> field name.
TOML_NAMES: dict[tuple[type, str], str] = {(SecureAggregationConfig, "dp"): "distributed_dp"}


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls`: a TOML section that mirrors a domain
    dataclass takes its defaults from it, so there is one set of defaults."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


# Keys of earlier releases and where they live now: a file that uses one fails with the new name.
MOVED = {
    "secagg.dp_noise_multiplier": "secagg.dp.noise_multiplier",
    "secagg.dp_clip_norm": "secagg.dp.clip_norm",
    "secagg.dp_noise": "secagg.dp.kind",
    "secagg.dp_delta": "secagg.dp.delta",
    "privacy.local_dp": "privacy.local (the table [privacy.local] turns local DP-SGD on)",
    "privacy.noise_multiplier": "privacy.local.noise_multiplier",
    "privacy.target_epsilon": "privacy.local.target_epsilon",
    "privacy.max_grad_norm": "privacy.local.max_grad_norm",
    "privacy.delta": "privacy.local.delta",
    "user_dp": "privacy.user (the table [privacy.user], without `enabled`, turns it on)",
}


def load_toml(path: Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tables of a TOML file (empty for None) with dotted-key `overrides` applied (a dict
    value is a table, merged into the file's)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        table = data
        for depth, name in enumerate(tables, 1):
            table = table.setdefault(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{'.'.join(tables[:depth])} must be a table (a [section]), "
                                  f"got {table!r}: it cannot hold {dotted}")
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            table[key].update(value)  # a table given by a flag (`{}`: present) joins the file's
        else:
            table[key] = value
    return data


def build(cls: type[T], data: Any, prefix: str) -> T:
    """Construct dataclass `cls` from a TOML table, checking keys and types.

    Raises:
        ConfigError: a key is unknown, moved or missing, or a value is invalid; the message
            names the key (`section.key`).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a table")
    fields = toml_fields(cls)
    _check_keys(set(data), fields, prefix)
    hints = typing.get_type_hints(cls)
    kwargs = {
        fields[k].name: _field_value(hints[fields[k].name], fields[k], v, _join(prefix, k))
        for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"[{prefix}]: {err}") from err


def toml_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of dataclass `cls` by their TOML key."""
    names = {field: key for (owner, key), field in TOML_NAMES.items() if owner is cls}
    return {names.get(f.name, f.name): f for f in dataclasses.fields(cls)}


def _field_value(tp: Any, f: dataclasses.Field[Any], value: Any, key: str) -> Any:
    if f.metadata.get("switch") != SWITCH or not isinstance(value, dict):
        return _convert(tp, value, key)
    on = value.get(SWITCH, False)
    if not isinstance(on, bool):
        raise ConfigError(f"{key}.{SWITCH} must be bool, got {on!r}")
    rest = {k: v for k, v in value.items() if k != SWITCH}
    if on:
        return _convert(tp, rest, key)
    _check_keys(set(rest), toml_fields(_table_type(tp)), key)
    tables = sorted(k for k, v in rest.items() if isinstance(v, dict))
    if tables:
        raise ConfigError(f"[{key}.{tables[0]}] belongs to [{key}], which is off: set "
                          f"{key}.{SWITCH} = true, or remove [{key}.{tables[0]}]")
    return None


def _table_type(tp: Any) -> type:
    if isinstance(tp, types.UnionType):
        (tp,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        raise TypeError(f"{tp} is not a table")
    return tp


def _check_keys(keys: set[str], fields: dict[str, dataclasses.Field[Any]], prefix: str) -> None:
    moved = sorted(k for k in keys if _join(prefix, k) in MOVED)
    if moved:
        raise ConfigError("; ".join(
            f"{_join(prefix, k)} is now {MOVED[_join(prefix, k)]}" for k in moved
        ) + ": rename the key(s) (see docs/deployment.md)")
    unknown = sorted(keys - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(_join(prefix, k) for k in unknown)}")
    missing = sorted(
        name for name, f in fields.items() if name not in keys
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"[{prefix}] needs {', '.join(_join(prefix, k) for k in missing)}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    if isinstance(tp, types.UnionType):  # `X | None`: a value given is an X
        (tp,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
    if tp is Roster:
        return _roster(value, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    plain_type = isinstance(tp, type) and not isinstance(tp, types.GenericAlias)
    if plain_type and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")
    return value


def _roster(value: Any, key: str) -> Roster | None:
    """The roster at path `value` ("" for none), read once, at start."""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be str (a roster file), got {value!r}")
    if not value:
        return None
    section, _, name = key.rpartition(".")
    try:
        return load_roster(value)
    except RosterError as err:
        raise ConfigError(f"[{section}] {name}: {err}") from err


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
