"""Options that take one value for every objective or `objective=value` pairs (`--weights`,
`--response`, `--demos`, `--amplify`), or a list of objectives (`--refusal-anchors`, `--protect`): one
parser each, so they all read and fail the same way."""

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


def comma_list(value: str | Sequence[str] | None) -> list[str]:
    """`a, b,,c` (or a list) -> ['a', 'b', 'c']: stripped, blanks dropped, None -> []."""
    if value is None:
        return []
    return [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]


def objective_list(value: str | Sequence[str] | None) -> list[str]:
    """`neighbor, retain` (or a list) -> ['neighbor', 'retain']; '' / 'none' / None -> []. Unchecked."""
    items = comma_list(value)
    return [] if items == ["none"] else items


def objective_subset(value: str | Sequence[str] | None, option: str) -> tuple[str, ...]:
    """`retain,neighbor` -> ('neighbor', 'retain') in OBJECTIVES order (canonical: run.json and resume
    compare it); '' / 'none' / None -> (); anything not an objective is an error."""
    items = objective_list(value)
    for item in items:
        if item not in OBJECTIVES:
            raise MuleError(f"{option}: {item!r} is not an objective (use {', '.join(OBJECTIVES)})")
    return tuple(o for o in OBJECTIVES if o in items)


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
