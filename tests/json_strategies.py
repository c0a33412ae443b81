"""Hypothesis strategies for the JSON Schema subset pydantic writes for protocol messages.

hypothesis-jsonschema would do this, but its last release (0.23.1) fails on current
Hypothesis (it calls `conjecture.utils.many.more()`, which Hypothesis 6.150+ no longer has),
and schemathesis's generator is internal API. Our message schemas use a small subset (type,
const, enum, min/maxLength, pattern, minimum/maximum, anyOf, items, additionalProperties, $ref to
$defs, required), so a converter for exactly that subset is short; anything else raises, so
a new construct in a message model fails loudly instead of generating wrong data.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_UNSUPPORTED = {"format", "oneOf", "allOf", "not", "if", "patternProperties"}
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under `schema` (a pydantic model_json_schema() dict)."""
    return _build(schema, schema.get("$defs", {}))


def _build(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    unsupported = _UNSUPPORTED & schema.keys()
    if unsupported:
        raise ValueError(f"unsupported JSON Schema keywords {sorted(unsupported)}: {schema}")
    if "$ref" in schema:
        return _build(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([_build(s, defs) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False,
                         allow_infinity=False)
    if kind == "string" and "pattern" in schema:
        low, high = schema.get("minLength", 0), schema.get("maxLength", 1 << 30)
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda v: low <= len(v) <= high)
    if kind == "string":
        low = schema.get("minLength", 0)
        high = schema.get("maxLength", max(low, 40))
        return st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                       min_size=low, max_size=min(high, low + 60))
    if kind == "array":
        return st.lists(_build(schema.get("items", {}), defs), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 5), 5))
    if kind == "object":
        return _object(schema, defs)
    if not schema:  # {}: anything
        return st.none() | st.booleans() | st.integers() | _TEXT
    raise ValueError(f"unsupported JSON Schema: {schema}")


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties")
    fixed = st.fixed_dictionaries(
        {k: _build(v, defs) for k, v in properties.items() if k in required},
        optional={k: _build(v, defs) for k, v in properties.items() if k not in required})
    if not isinstance(extra, dict):
        return fixed
    free = st.dictionaries(_TEXT.filter(lambda k: k not in properties), _build(extra, defs),
                           max_size=3)
    return st.tuples(fixed, free).map(lambda pair: {**pair[1], **pair[0]})
