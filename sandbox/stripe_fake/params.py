"""Decoding and checking of Stripe's form-encoded request parameters.

stripe-python sends nested values as bracketed keys (`_encode.py: _api_encode`): dicts as
`metadata[order_id]=7`, lists always with indexes (`line_items[0][quantity]=1`,
`expand[0]=payment_intent`); curl users write `expand[]=...`. Both list forms are accepted.
Every value arrives as a string; the typed getters convert them and fail like Stripe does.
"""

from __future__ import annotations

import re
from typing import Any, Literal, overload
from urllib.parse import parse_qsl

from . import errors

_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    rest = "[" + rest
    parts = _KEY_PART.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:
        return [key]  # Not a well-formed bracket key: keep it literal.
    return [head, *parts]


def _to_lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _to_lists(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def decode(encoded: bytes | str) -> dict[str, Any]:
    text = encoded.decode("utf-8") if isinstance(encoded, bytes) else encoded
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = _split_key(key)
        node = root
        for depth, raw_part in enumerate(parts):
            part = raw_part or str(len(node))  # `expand[]` appends.
            last = depth == len(parts) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise errors.invalid_request(f"Invalid hash: {key}", param=key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise errors.invalid_request(f"Invalid hash: {key}", param=key)
                node = child
    return _to_lists(root)


def reject_unknown(params: dict[str, Any], allowed: dict[str, Any], prefix: str = "") -> None:
    """`allowed` maps a name to None (any value), a nested dict, or `[dict]` for a list of dicts."""
    for name, value in params.items():
        path = f"{prefix}[{name}]" if prefix else name
        if name not in allowed:
            raise errors.unknown_param(path)
        shape = allowed[name]
        if isinstance(shape, dict):
            if not isinstance(value, dict):
                raise errors.invalid_param(path, f"Invalid object: {path} must be a hash.")
            reject_unknown(value, shape, path)
        elif isinstance(shape, list):
            if not isinstance(value, list):
                raise errors.invalid_param(path, f"Invalid array: {path} must be an array.")
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise errors.invalid_param(f"{path}[{index}]", f"Invalid object: {path}[{index}] must be a hash.")
                reject_unknown(item, shape[0], f"{path}[{index}]")


@overload
def string(value: Any, param: str, *, required: Literal[True], choices: tuple[str, ...] = ()) -> str: ...
@overload
def string(value: Any, param: str, *, required: bool = False, choices: tuple[str, ...] = ()) -> str | None: ...
def string(value: Any, param: str, *, required: bool = False, choices: tuple[str, ...] = ()) -> str | None:
    """The string parameter; `required` raises Stripe's missing-parameter error, so it never returns None then."""
    if value is None or value == "":
        if required:
            raise errors.missing_param(param)
        return None
    if not isinstance(value, str):
        raise errors.invalid_param(param, f"Invalid string: {param} must be a string.")
    if choices and value not in choices:
        raise errors.invalid_param(param, f"Invalid {param}: must be one of {', '.join(choices)}")
    return value


@overload
def integer(value: Any, param: str, *, required: Literal[True], minimum: int | None = None) -> int: ...
@overload
def integer(value: Any, param: str, *, required: bool = False, minimum: int | None = None) -> int | None: ...
def integer(value: Any, param: str, *, required: bool = False, minimum: int | None = None) -> int | None:
    """The integer parameter; `required` raises Stripe's missing-parameter error, so it never returns None then."""
    if value is None or value == "":
        if required:
            raise errors.missing_param(param)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not re.fullmatch(r"-?\d+", str(value)):
        raise errors.invalid_param(param, f"Invalid integer: {value}", code="parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise errors.invalid_param(
            param, f"Invalid {kind} integer: {param} must be at least {minimum}.", code="parameter_invalid_integer"
        )
    return number


def boolean(value: Any, param: str) -> bool:
    """A boolean parameter, as the libraries send it ("true" / "false"); absent means false."""
    if value is None or value == "":
        return False
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise errors.invalid_param(param, f"Invalid boolean: {value}")


def metadata(value: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's documented metadata limits: 50 keys, 40-character keys, 500-character values."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise errors.invalid_param(param, f"Invalid object: {param} must be a hash.")
    if len(value) > 50:
        raise errors.invalid_param(param, "Invalid metadata: metadata can have up to 50 keys.")
    for key, item in value.items():
        if len(key) > 40:
            raise errors.invalid_param(f"{param}[{key}]", "Metadata keys can have up to 40 characters.")
        if not isinstance(item, str) or len(item) > 500:
            raise errors.invalid_param(f"{param}[{key}]", "Metadata values can have up to 500 characters.")
    # An empty value unsets a key in Stripe; on create that simply means "absent".
    return {key: item for key, item in value.items() if item != ""}


def string_list(value: Any, param: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise errors.invalid_param(param, f"Invalid array: {param} must be an array of strings.")
    return value


def created_filter(value: Any, param: str = "created") -> dict[str, int]:
    """`created=123` or `created[gte]=...&created[lt]=...`, returned as {operator: timestamp}."""
    if value is None:
        return {}
    if isinstance(value, dict):
        reject_unknown(value, {"gt": None, "gte": None, "lt": None, "lte": None}, param)
        return {op: integer(bound, f"{param}[{op}]", required=True) for op, bound in value.items()}
    return {"eq": integer(value, param, required=True)}


def created_matches(created: int, bounds: dict[str, int]) -> bool:
    checks = {
        "eq": created.__eq__,
        "gt": created.__gt__,
        "gte": created.__ge__,
        "lt": created.__lt__,
        "lte": created.__le__,
    }
    return all(checks[op](bound) for op, bound in bounds.items())
