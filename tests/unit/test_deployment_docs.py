"""docs/deployment.md documents every configuration key, with its real default."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import typing
from pathlib import Path
from typing import Any

from fedcore.config import CoordinatorConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
ROW = re.compile(r"^\| `(?P<key>[a-z_]+\.[a-z_]+)` \| [^|]+ \| `(?P<default>[^`]*)` \|", re.M)


def config_fields() -> dict[str, Any]:
    """`section.key` -> default, for every field of the configuration dataclasses."""
    hints = typing.get_type_hints(CoordinatorConfig)
    out: dict[str, Any] = {}
    for section in dataclasses.fields(CoordinatorConfig):
        cls = hints[section.name]
        for f in dataclasses.fields(cls):
            out[f"{section.name}.{f.name}"] = f.default
    return out


def toml_literal(value: Any) -> str:
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
