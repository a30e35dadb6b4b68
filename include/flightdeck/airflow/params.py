"""A DAG's Params from the pydantic model that validates them, so the two cannot drift apart.

Each field becomes one `Param` whose JSON schema is the field's (type, description, pattern,
bounds, enum from a Literal, `null` allowed for an Optional; a nested model inlined): the
trigger form checks what it can, and the task that reads the Params validates them again,
fully, with the same model (cross-field rules live only there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Param
from pydantic import BaseModel
from pydantic_core import to_jsonable_python


def params_from_model(model: type[BaseModel], overrides: Mapping[str, Any] | None = None,
                      exclude: Iterable[str] = ()) -> dict[str, Param]:
    """One Param per field of `model`, in declaration order.

    Args:
        overrides: field → default shown in the trigger form instead of the model's (e.g. the
            configured model name).
        exclude: fields the DAG fixes itself (they are not Params).
    """
    overrides = dict(overrides or {})
    skipped = set(exclude)
    unknown = (set(overrides) | skipped) - set(model.model_fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    params = {}
    for name, field in model.model_fields.items():
        if name in skipped:
            continue
        field_schema = _clean(_inline(schema["properties"][name], definitions))
        description = field_schema.pop("description", None)
        if name in overrides:
            default = overrides[name]
        elif field.is_required():
            params[name] = Param(description=description, **field_schema)
            continue
        else:
            default = field.get_default(call_default_factory=True)
        params[name] = Param(to_jsonable_python(default), description=description, **field_schema)
    return params


def _inline(node: Any, definitions: dict) -> Any:
    """`node` with every `$ref` replaced by the definition it names."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        rest = {key: value for key, value in node.items() if key != "$ref"}
        return _inline({**target, **rest}, definitions)
    return {key: _inline(value, definitions) for key, value in node.items()}


def _clean(node: Any, top: bool = True) -> Any:
    """Drop labels (and the top-level default); turn `anyOf [X, null]` into X with type [X, "null"],
    which the trigger form renders as an optional X."""
    if isinstance(node, list):
        return [_clean(item, False) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned = {key: _clean(value, False) for key, value in node.items()
               if key != "title" and not (top and key == "default")}
    if isinstance(node.get("properties"), dict):  # field names, not schema keywords: keep them all
        cleaned["properties"] = {name: _clean(value, False) for name, value in node["properties"].items()}
    options = cleaned.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(option for option in options if option != {"type": "null"})
        if isinstance(other.get("type"), str):
            del cleaned["anyOf"]
            cleaned = {**other, **cleaned, "type": [other["type"], "null"]}
    return cleaned


def validated(model: type[BaseModel], params: Mapping[str, Any], dag_run: Any = None) -> Any:
    """The run's Params (and run conf, which may carry keys the form does not show) parsed by
    `model.parse`; a bad value fails the task at once, naming the Param and the fix."""
    from flightdeck.airflow.defaults import fail_fast_on_user_error

    values = {**params, **((dag_run.conf or {}) if dag_run is not None else {})}
    with fail_fast_on_user_error():
        return model.parse(values)
