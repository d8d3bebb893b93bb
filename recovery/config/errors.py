"""Turn validation failures into one line each: ``FILE: key.path: what is wrong``."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import ValidationError


class ConfigError(Exception):
    """One or more problems in a config file; each message names the file and the key path."""

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


def key_path(loc: Iterable[Any]) -> str:
    """``("steps", 2, "params")`` -> ``steps[2].params``; keys with dots are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if "." in text or " " in text or not text:
                text = f'"{text}"'
            out += f".{text}" if out else text
    return out or "(top level)"


def _real_loc(loc: tuple[Any, ...], data: Any, missing: bool) -> list[Any]:
    """Keep only real keys of the input.

    pydantic puts labels into a location that are not keys: the member of a
    discriminated union (``oob.lab.port``) and ``[key]`` for a bad table key.
    The name of a missing key is the one label kept (it is the last entry).
    """
    real: list[Any] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, (dict, list)) and _has(node, part):
            node = node[part]
            real.append(part)
        elif last and missing:
            real.append(part)
    return real


def _has(node: dict[Any, Any] | list[Any], part: Any) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(part, int) and 0 <= part < len(node)


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else f"'{value}'"


def _message(err: dict[str, Any]) -> tuple[str, str | None]:
    """The human message for one pydantic error, plus a key to append to the location."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"])), None
    if kind == "missing":
        return "missing required key", None
    if kind == "union_tag_invalid":
        tag_key = str(ctx["discriminator"]).strip("'")
        expected = ", ".join(t.strip().strip("'") for t in str(ctx["expected_tags"]).split(","))
        return f"unknown {tag_key} {_describe(ctx['tag'])} (expected one of: {expected})", tag_key
    if kind == "union_tag_not_found":
        return "missing required key", str(ctx["discriminator"]).strip("'")
    if kind == "literal_error":
        expected = str(ctx["expected"]).replace(" or ", ", ")
        return f"{_describe(value)} is not allowed (expected one of: {expected})", None
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return f"expected an integer, got {_describe(value)}", None
    if kind in {"float_type", "float_parsing"}:
        return f"expected a number, got {_describe(value)}", None
    if kind in {"bool_type", "bool_parsing"}:
        return f"expected true or false, got {_describe(value)}", None
    if kind == "string_type":
        return f"expected a string, got {_describe(value)}", None
    if kind in {"list_type"}:
        return f"expected a list, got {_describe(value)}", None
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return f"expected a table, got {_describe(value)}", None
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return f"{_describe(value)}: {err['msg'].lower()}", None
    if kind == "too_short":
        return "must not be empty", None
    return err["msg"], None


def from_validation(file: str, exc: ValidationError, data: Any,
                    prefix: tuple[Any, ...] = ()) -> ConfigError:
    """One message per error; ``prefix`` is where ``data`` sits in the file."""
    messages = []
    for err in exc.errors(include_url=False):
        text, extra = _message(err)
        loc = _real_loc(tuple(err["loc"]), data, err["type"] == "missing")
        if extra:
            loc.append(extra)
        messages.append(f"{file}: {key_path((*prefix, *loc))}: {text}")
    return ConfigError(dict.fromkeys(messages))
