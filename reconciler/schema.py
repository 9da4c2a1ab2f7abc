"""JSON Schema validation of YAML documents, with every error mapped back to file:line:col.

The schemas in `schemas/` are the single source of truth for shapes; this module only turns jsonschema's
errors into messages a fleet operator can act on. For speed on large fleets, `items` whose item schema is a
plain string pattern (VIN lists) are checked with one compiled regex, falling back to jsonschema for any item
that fails, so verdicts and messages are the same as jsonschema's own.

Two departures from jsonschema's defaults: "integer" means a whole number written as one (1.0 and true are not;
jsonschema accepts 1.0, which the API then reads as 0) and "number" a finite one (.nan passes every bound);
and the keywords that put the offending value into their message show it cut short, since jsonschema writes
its whole repr, which for a value repeated by aliases or a huge list is gigabytes.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from reconciler.diagnostics import Diagnostic, clip
from reconciler.model import DAY_SETS, DAYS
from reconciler.yamlload import Document

SCHEMA_FILES = (
    "callback.schema.json",
    "vehicle-group.schema.json",
    "preconditioning.schema.json",
    "manifest.schema.json",
    "config.schema.json",
)

VIN_PATTERN = "^[A-HJ-NPR-Za-hj-npr-z0-9]{17}$"
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"

# id() of an `items` subschema -> compiled pattern its items must match (see module docstring)
_FAST_ITEMS: dict[int, re.Pattern[str]] = {}


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("reconciler").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    _index_fast_items(schema, schema)
    return schema


@cache
def _registry() -> Registry:
    resources_ = [
        (name, Resource.from_contents(load_schema(name), default_specification=DRAFT202012)) for name in SCHEMA_FILES
    ]
    return Registry().with_resources(resources_)


def _items(validator: Validator, items: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    pattern = _FAST_ITEMS.get(id(items))
    if pattern is None or not isinstance(instance, list) or "prefixItems" in schema:
        yield from _DRAFT_ITEMS(validator, items, instance, schema)
        return
    search = pattern.search
    for index, item in enumerate(instance):
        if type(item) is str and search(item):
            continue
        yield from validator.descend(instance=item, schema=items, path=index)


_DRAFT_ITEMS = Draft202012Validator.VALIDATORS["items"]


def _is_integer(checker: Any, instance: Any) -> bool:
    return type(instance) is int


def _is_number(checker: Any, instance: Any) -> bool:
    return type(instance) is int or (type(instance) is float and math.isfinite(instance))


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 2, 40, 40, 40
_BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxset = _BRIEF.maxtuple = 3


def brief(value: Any) -> str:
    """A repr of `value` of bounded length, made without visiting more than a few of its parts."""
    return clip(_BRIEF.repr(value), 160)


# ---- keywords whose jsonschema message holds the whole offending value, with the value cut short --------


def _type(validator: Validator, types: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    names = types if isinstance(types, list) else [types]
    if not any(validator.is_type(instance, name) for name in names):
        yield ValidationError(f"{brief(instance)} is not of type {', '.join(map(repr, names))}")


def _enum(validator: Validator, enums: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if all(not jsonschema._utils.equal(each, instance) for each in enums):
        yield ValidationError(f"{brief(instance)} is not one of {brief(enums)}")


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not re.search(pattern, instance):
        yield ValidationError(f"{brief(instance)} does not match {pattern!r}")


def _bound(kind: str, fails: Callable[[Any, Any], bool], words: str) -> Any:
    """A keyword that compares an instance of type `kind` with the keyword's value."""

    def check(validator: Validator, limit: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
        if validator.is_type(instance, kind) and fails(instance, limit):
            yield ValidationError(f"{brief(instance)} {words} {limit!r}")

    return check


def _any_of(validator: Validator, options: Any, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    errors: list[ValidationError] = []
    for index, option in enumerate(options):
        found = list(validator.descend(instance, option, schema_path=index))
        if not found:
            return
        errors.extend(found)
    yield ValidationError(f"{brief(instance)} is not valid under any of the given schemas", context=errors)


def _additional(
    validator: Validator, allowed: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = [key for key in instance if key not in schema.get("properties", {})]
    if isinstance(allowed, dict):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        yield ValidationError(f"Additional properties are not allowed ({brief(extras)} unexpected)")


_KEYWORDS = {
    "items": _items,
    "type": _type,
    "enum": _enum,
    "pattern": _pattern,
    "anyOf": _any_of,
    "additionalProperties": _additional,
    "minimum": _bound("number", lambda value, limit: value < limit, "is less than the minimum of"),
    "maximum": _bound("number", lambda value, limit: value > limit, "is greater than the maximum of"),
    "exclusiveMinimum": _bound("number", lambda value, limit: value <= limit, "is not greater than"),
    "exclusiveMaximum": _bound("number", lambda value, limit: value >= limit, "is not less than"),
    "minItems": _bound("array", lambda value, limit: len(value) < limit, "has fewer items than"),
    "maxItems": _bound("array", lambda value, limit: len(value) > limit, "has more items than"),
    "minLength": _bound("string", lambda value, limit: len(value) < limit, "is shorter than"),
    "maxLength": _bound("string", lambda value, limit: len(value) > limit, "is longer than"),
    "minProperties": _bound("object", lambda value, limit: len(value) < limit, "has fewer keys than"),
    "uniqueItems": _bound(
        "array", lambda value, limit: limit and not jsonschema._utils.uniq(value), "has non-unique elements:"
    ),
}
_FastValidator = jsonschema.validators.extend(Draft202012Validator, _KEYWORDS, type_checker=_TYPES)


def _index_fast_items(node: Any, root: Mapping[str, Any]) -> None:
    if isinstance(node, dict):
        items = node.get("items")
        if isinstance(items, dict):
            target = items
            ref = items.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and len(items) == 1:
                target = root.get("$defs", {}).get(ref[len("#/$defs/") :], {})
            if set(target) == {"type", "pattern"} and target["type"] == "string":
                _FAST_ITEMS[id(items)] = re.compile(target["pattern"])
        for value in node.values():
            _index_fast_items(value, root)
    elif isinstance(node, list):
        for value in node:
            _index_fast_items(value, root)


@cache
def validator(name: str) -> Validator:
    schema = load_schema(name)
    return _FastValidator(schema, registry=_registry())


def check(document: Document, schema_name: str) -> list[Diagnostic]:
    """Every schema error of `document`, as diagnostics at the position of the offending node."""
    found: list[Diagnostic] = []
    errors = list(validator(schema_name).iter_errors(document.data))
    # a value of the wrong type gets that said once, not also every bound it misses (slot: 7.0)
    mistyped = {tuple(error.absolute_path) for error in errors if error.validator == "type"}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped:
            continue
        found.extend(_diagnostics(document, error))
    return found


# ---- turning jsonschema errors into messages -------------------------------------------------------------

_TYPE_WORDS = {
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "empty",
}


def describe(value: Any) -> str:
    """How a YAML value reads in a message: its type and, for scalars, the value itself."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"the value {'.nan' if math.isnan(value) else '-.inf' if value < 0 else '.inf'}"
    if isinstance(value, int | float):
        return f"the number {brief(value)}"
    if isinstance(value, str):
        return f"the string '{_short(value)}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__  # pragma: no cover - YAML gives no other types


def _short(text: str, limit: int = 60) -> str:
    return clip(text, limit)


def field_name(path: Sequence[str | int]) -> str:
    """`programs[1].start` for the path ('programs', 1, 'start')."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text or "document"


def suggest(word: Any, choices: Iterable[str]) -> str:
    """` (did you mean 'X'?)` when a choice is close to `word`, else nothing."""
    if not isinstance(word, str) or len(word) > 100:  # difflib's time grows with the product of the lengths
        return ""
    lowered = {choice.lower(): choice for choice in choices}
    if word.lower() in lowered:
        return f" (did you mean '{lowered[word.lower()]}'?)"
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        close = [choice for choice in lowered if choice.startswith(word.lower())][:1]
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def _diagnostics(document: Document, error: ValidationError) -> Iterator[Diagnostic]:
    path = list(error.absolute_path)
    keyword = error.validator
    field = field_name(path)
    instance = error.instance
    at = document.position(path)

    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        where = f" in {field}" if path else ""
        for key in instance:
            if key not in known:
                yield Diagnostic(
                    document.position([*path, key], key=True),
                    "unknown-field",
                    f"unknown field '{_short(str(key))}'{where}{suggest(key, known)}",
                )
        return
    if keyword == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        where = f" in {field}" if path else ""
        yield Diagnostic(at, "missing-field", f"missing required field '{missing}'{where}")
        return
    if keyword == "propertyNames":
        key = instance
        parent = path
        yield Diagnostic(
            document.position([*parent, key], key=True),
            "field-name",
            f"'{_short(str(key))}' is not a valid key in {field}",
        )
        return
    if keyword == "type":
        expected = error.validator_value
        words = [_TYPE_WORDS.get(str(t), str(t)) for t in (expected if isinstance(expected, list) else [expected])]
        hint = " (YAML 1.2: write true or false)" if expected == "boolean" and isinstance(instance, str) else ""
        yield Diagnostic(at, "type", f"{field} must be {' or '.join(words)}, not {describe(instance)}{hint}")
        return
    if keyword in ("enum", "const"):
        choices = error.validator_value if keyword == "enum" else [error.validator_value]
        names = [str(c) for c in choices]
        yield Diagnostic(
            at,
            "enum",
            f"{field}: {describe(instance)} is not one of {', '.join(names)}{suggest(instance, names)}",
        )
        return
    if keyword == "pattern":
        yield _pattern_diagnostic(at, field, path, instance, str(error.validator_value))
        return
    if keyword in ("minimum", "maximum") and path and path[-1] == "slot":
        yield Diagnostic(at, "slot-range", f"slot {brief(instance)} is out of range: a vehicle has slots 1 to 4")
        return
    if keyword == "maxItems" and path and path[-1] == "programs":
        yield Diagnostic(
            at,
            "slot-limit",
            f"{len(instance)} programs in one schedule: a vehicle holds at most 4 (slots 1 to 4)",
        )
        return
    if keyword == "anyOf" and path and path[-1] == "days":
        yield from _days_diagnostics(document, path, instance)
        return
    yield Diagnostic(at, "value", _generic_message(field, keyword, error))


def _pattern_diagnostic(at: Any, field: str, path: list[str | int], value: Any, pattern: str) -> Diagnostic:
    if pattern == VIN_PATTERN:
        return Diagnostic(
            at,
            "vin-format",
            f"malformed VIN '{_short(str(value))}': a VIN is 17 letters and digits, without I, O or Q",
        )
    if pattern == NAME_PATTERN:
        return Diagnostic(
            at,
            "name-format",
            f"{field} '{_short(str(value))}' is not a valid name: use letters, digits, '-' and '_', "
            "start with a letter or digit, at most 63 characters",
        )
    if path and path[-1] == "start":
        return Diagnostic(
            at, "start-format", f'start \'{_short(str(value))}\' is not a time of day: use "HH:MM" or "PT7H30M"'
        )
    return Diagnostic(at, "value", f"{field}: '{_short(str(value))}' does not match the pattern {pattern}")


def _days_diagnostics(document: Document, path: list[str | int], value: Any) -> Iterator[Diagnostic]:
    at = document.position(path)
    shorthands = tuple(DAY_SETS)
    if isinstance(value, str):
        yield Diagnostic(
            at,
            "days-unknown",
            f"days: '{_short(value)}' is not weekdays, weekend or daily, nor a list of days Mon..Sun"
            f"{suggest(value, (*shorthands, *DAYS))}",
        )
        return
    if isinstance(value, list):
        if not value:
            yield Diagnostic(at, "days-unknown", "days must not be empty: list at least one of Mon..Sun")
            return
        for index, day in enumerate(value):
            if day not in DAYS:
                yield Diagnostic(
                    document.position([*path, index]),
                    "days-unknown",
                    f"unknown day '{_short(str(day))}': days are Mon, Tue, Wed, Thu, Fri, Sat, Sun{suggest(day, DAYS)}",
                )
        return
    yield Diagnostic(at, "type", f"days must be a list of days or weekdays/weekend/daily, not {describe(value)}")


def _generic_message(field: str, keyword: str, error: ValidationError) -> str:
    limit = error.validator_value
    if keyword == "minimum":
        return f"{field} must be at least {limit}, not {brief(error.instance)}"
    if keyword == "maximum":
        return f"{field} must be at most {limit}, not {brief(error.instance)}"
    if keyword == "exclusiveMinimum":
        return f"{field} must be greater than {limit}, not {brief(error.instance)}"
    if keyword == "minLength":
        return f"{field} must not be empty"
    if keyword == "minItems":
        return f"{field} must list at least {limit} item{'s' if limit != 1 else ''}"
    if keyword == "minProperties":
        return f"{field} must not be empty" + (": list groups, vins or both" if field == "vehicles" else "")
    if keyword == "uniqueItems":
        return f"{field} lists the same value twice"
    if keyword == "anyOf":
        description = error.schema.get("description", "")
        explained = f": {description[0].lower()}{description[1:]}" if description else ""
        return f"{field}: {describe(error.instance)} is not valid{explained}"
    return f"{field}: {error.message}"  # pragma: no cover - every keyword our schemas use is handled above
