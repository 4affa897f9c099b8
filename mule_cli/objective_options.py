"""Options that take one value for every objective or `objective=value` pairs (`--weights`,
`--response`, `--demos`, `--amplify`), or a list of objectives (`--refusal-anchors`): one parser each,
so they all read and fail the same way."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from .errors import MuleError
from .records import OBJECTIVES

T = TypeVar("T")


def objective_items(text: str | dict, option: str, form: str) -> list[tuple[str, str]]:
    """`a=1,b=2` (or a dict) -> [(key, value)]; the caller checks keys and values."""
    if isinstance(text, dict):
        return list(text.items())
    items = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise MuleError(f"{option}: {part.strip()!r} is not {form}")
        key, value = part.split("=", 1)
        items.append((key.strip(), value.strip()))
    return items


def objective_list(value: str | Sequence[str] | None) -> list[str]:
    """`neighbor, retain` (or a list) -> ['neighbor', 'retain']: stripped, blanks dropped; '' / 'none' /
    None -> []. Unchecked."""
    if value is None:
        return []
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]
    return [] if items == ["none"] else items


def per_objective(text: str | int | dict | None, option: str, form: str, default: T,
                  convert: Callable[[str, object], T]) -> dict[str, T]:
    """One value for all objectives (`3`) or per objective (`retain=0,neighbor=2`; unnamed keep
    `default`) -> {objective: value}. `convert(label, raw)` checks and converts one value; label is
    "objective=" or "" (a single value), for its error message."""
    if text is None or text == "":
        return {o: default for o in OBJECTIVES}
    if not isinstance(text, dict) and "=" not in str(text):
        value = convert("", text if not isinstance(text, str) else text.strip())
        return {o: value for o in OBJECTIVES}
    out = {o: default for o in OBJECTIVES}
    for key, raw in objective_items(text, option, form):
        if key not in OBJECTIVES:
            raise MuleError(f"{option}: unknown objective {key!r} (expected {', '.join(OBJECTIVES)})")
        out[key] = convert(f"{key}=", raw)
    return out
