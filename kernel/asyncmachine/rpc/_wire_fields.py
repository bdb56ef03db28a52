"""Field checks of the wire codec: types, ranges, lengths and JSON values.

Every check raises :class:`WireError` naming the field by its dotted path, so a
caller sees which part of which message was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

MAX_NAME_LENGTH = 256
"""Maximum length of ids, state names, hashes, tokens and other names."""

MAX_TEXT_LENGTH = 4096
"""Maximum length of free text: error messages and bye reasons."""

MAX_STATES = 65_535
"""Maximum number of states in a machine, and of items in any list of a message."""

MAX_JSON_DEPTH = 32
"""Maximum nesting of lists and objects inside args and payload data."""

STATE_FIELDS = frozenset({"auto", "multi", "require", "add", "remove", "after", "tags"})
"""Keys allowed in a state's entry of a schema."""

_STATE_FLAG_FIELDS = ("auto", "multi")


class WireError(ValueError):
    """A message or one of its fields is invalid.

    Attributes:
        field: Dotted path of the invalid field, e.g. ``set_clock.idxs[2]``.
        value: The invalid value (or a description, for large inputs).
        reason: What is wrong with it.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}: {reason} (got {short_repr(value)})")


def short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        return text[:77] + "..."
    return text


def check_int(
    field: str, value: Any, minimum: int = 0, maximum: int | None = None
) -> int:
    if type(value) is not int:
        raise WireError(field, value, "expected an int")
    if value < minimum:
        raise WireError(field, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise WireError(field, value, f"must be at most {maximum}")
    return value


def check_bool(field: str, value: Any) -> bool:
    if type(value) is not bool:
        raise WireError(field, value, "expected true or false")
    return value


def check_str(
    field: str, value: Any, max_length: int = MAX_NAME_LENGTH, *, empty: bool = True
) -> str:
    if type(value) is not str:
        raise WireError(field, value, "expected a string")
    if not empty and not value:
        raise WireError(field, value, "must not be empty")
    if len(value) > max_length:
        raise WireError(field, f"{len(value)} characters", f"longer than {max_length}")
    check_encodable(field, value)
    return value


def check_encodable(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireError(field, value, "contains a lone surrogate") from exc


def check_sequence(field: str, value: Any, max_items: int = MAX_STATES) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise WireError(field, value, "expected a list")
    if len(value) > max_items:
        raise WireError(field, f"{len(value)} items", f"more than {max_items} items")
    return list(value)


def check_int_list(
    field: str, value: Any, *, maximum: int | None = None, unique: bool = False
) -> tuple[int, ...]:
    items = check_sequence(field, value)
    result = tuple(
        check_int(f"{field}[{i}]", item, 0, maximum) for i, item in enumerate(items)
    )
    if unique and len(set(result)) != len(result):
        raise WireError(field, value, "contains duplicate indexes")
    return result


def check_index_list(
    field: str, value: Any, *, unique: bool = False
) -> tuple[int, ...]:
    return check_int_list(field, value, maximum=MAX_STATES - 1, unique=unique)


def check_name_list(field: str, value: Any, *, unique: bool = False) -> tuple[str, ...]:
    items = check_sequence(field, value)
    result = tuple(
        check_str(f"{field}[{i}]", item, empty=False) for i, item in enumerate(items)
    )
    if unique and len(set(result)) != len(result):
        raise WireError(field, value, "contains duplicate names")
    return result


def check_optional(check: Callable[[str, Any], Any], field: str, value: Any) -> Any:
    if value is None:
        return None
    return check(field, value)


def check_enum(field: str, value: Any, enum: type[IntEnum]) -> Any:
    if type(value) is not int and not isinstance(value, enum):
        raise WireError(field, value, f"expected an int code of {enum.__name__}")
    try:
        return enum(value)
    except ValueError:
        codes = ", ".join(f"{member.value} ({member.name})" for member in enum)
        raise WireError(
            field, value, f"unknown code; expected one of {codes}"
        ) from None


def check_json_value(field: str, value: Any, depth: int = 0) -> Any:
    """Return a JSON-ready copy of value, with tuples turned into lists."""
    if value is None or type(value) is bool or type(value) is int:
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise WireError(field, value, "JSON has no NaN or infinity")
        return value
    if type(value) is str:
        check_encodable(field, value)
        return value
    if depth >= MAX_JSON_DEPTH:
        raise WireError(field, "...", f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, list | tuple):
        return [
            check_json_value(f"{field}[{i}]", item, depth + 1)
            for i, item in enumerate(value)
        ]
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if type(key) is not str:
                raise WireError(field, key, "object keys must be strings")
            check_encodable(field, key)
            result[key] = check_json_value(f"{field}[{key!r}]", item, depth + 1)
        return result
    raise WireError(
        field,
        value,
        f"a {type(value).__name__} is not JSON-compatible; use None, bool, int, "
        "float, str, list or dict",
    )


def check_args(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise WireError(field, value, "expected an object of named args")
    result = {}
    for name, item in value.items():
        check_str(f"{field} name", name, empty=False)
        result[name] = check_json_value(f"{field}[{name!r}]", item, 1)
    return result


def check_schema(field: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise WireError(field, value, "expected an object of states")
    if len(value) > MAX_STATES:
        raise WireError(field, f"{len(value)} states", f"more than {MAX_STATES}")
    schema = {}
    for name, state in value.items():
        check_str(f"{field} state name", name, empty=False)
        state_field = f"{field}[{name!r}]"
        if not isinstance(state, Mapping):
            raise WireError(state_field, state, "expected an object of state fields")
        entry: dict[str, Any] = {}
        for key, item in state.items():
            if key not in STATE_FIELDS:
                raise WireError(
                    f"{state_field}.{key}",
                    item,
                    f"unknown state field; expected one of {sorted(STATE_FIELDS)}",
                )
            if key in _STATE_FLAG_FIELDS:
                entry[key] = check_bool(f"{state_field}.{key}", item)
            else:
                entry[key] = check_name_list(f"{state_field}.{key}", item)
        schema[name] = entry
    return schema


def expect_fields(name: str, body: list[Any], count: int) -> None:
    if len(body) != count:
        raise WireError(name, f"{len(body)} fields", f"expected {count} fields")


def set_field(message: Any, name: str, value: Any) -> None:
    # Frozen dataclasses store normalized field values through object.__setattr__.
    object.__setattr__(message, name, value)
