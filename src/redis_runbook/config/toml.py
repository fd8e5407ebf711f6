"""A minimal TOML writer for the shapes our config has: tables of scalars and
lists of scalars, nested tables, and arrays of tables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a valid TOML basic string


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_table(v) for v in value)


def dumps(data: Mapping[str, Any], prefix: str = "") -> str:
    """Serialise `data` to TOML text. None values are omitted (TOML has no null)."""
    lines = [
        f"{k} = {_scalar(v)}"
        for k, v in data.items()
        if v is not None and not (_is_table(v) or _is_table_array(v))
    ]
    blocks = ["\n".join(lines)] if lines else []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if _is_table(value):
            blocks.append(f"[{name}]\n" + dumps(value, f"{name}.").strip())
        elif _is_table_array(value):
            for item in value:
                blocks.append(f"[[{name}]]\n" + dumps(item, f"{name}.").strip())
    return "\n\n".join(b for b in blocks if b.strip()) + "\n"
