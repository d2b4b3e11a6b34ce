"""docs/deployment.md documents every configuration key, with its real default."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import typing
from pathlib import Path
from typing import Any

from fedcore.config import SWITCH, CoordinatorConfig, toml_fields
from fedcore.secagg.roster import Roster

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
ROW = re.compile(
    r"^\| `(?P<key>[a-z_]+(?:\.[a-z0-9_]+)+)` \| [^|]+ \| `(?P<default>[^`]*)` \|", re.MULTILINE
)
REQUIRED = "required"


def config_fields() -> dict[str, Any]:
    """`section.key` -> default, for every field of the configuration dataclasses (nested
    tables such as `[secagg.dp]` as `secagg.dp.key`; fields without a default as REQUIRED)."""
    return table_fields(CoordinatorConfig, "")


def table_fields(cls: type, prefix: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for name, f in toml_fields(cls).items():
        key = f"{prefix}.{name}" if prefix else name
        table = next((t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                      if dataclasses.is_dataclass(t) and t is not Roster), None)  # a path
        if f.metadata.get("switch") == SWITCH:
            out[f"{key}.{SWITCH}"] = False
        if table is not None:
            out |= table_fields(table, key)
        else:
            out[key] = REQUIRED if f.default is dataclasses.MISSING else f.default
    return out


def toml_literal(value: Any) -> str:
    if value is REQUIRED:
        return REQUIRED
    if value is None:  # a file path left unset
        return '""'
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def documented() -> dict[str, str]:
    return {m["key"]: m["default"] for m in ROW.finditer(DOC.read_text())}


def test_every_config_key_is_in_the_reference() -> None:
    missing = sorted(set(config_fields()) - set(documented()))

    assert not missing, f"add these keys to the reference in {DOC.name}: {missing}"


def test_the_reference_lists_no_key_that_does_not_exist() -> None:
    stale = sorted(set(documented()) - set(config_fields()))

    assert not stale, f"keys in {DOC.name} that fedcore.config does not have: {stale}"


def test_documented_defaults_are_the_real_ones() -> None:
    docs = documented()
    wrong = {
        key: (docs[key], toml_literal(default))
        for key, default in config_fields().items()
        if key in docs and docs[key] != toml_literal(default)
    }

    assert not wrong, f"documented vs real default: {wrong}"
