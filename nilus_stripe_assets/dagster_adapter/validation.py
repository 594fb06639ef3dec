"""A setting Pydantic refuses, as the one line a user reads: the setting, what it must be, the fix.

The resources and the run config declare their ranges as Pydantic constraints (`Field(ge=1)`), so they are
checked wherever Dagster builds them: from run config when a run starts, or in a location's code. Pydantic's
own report is several lines with the input echoed (which, for an address, may hold a password), and Dagster
prints it with three stack traces. Each model's `model_validator(mode="wrap")` hands the error to
`one_line`, which raises a `dg.Failure` instead: Pydantic lets exceptions other than `ValueError` through
unchanged, Dagster records it as the cause of the run's failure, and `console.py` prints its one line.
"""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg
from pydantic import BaseModel, ValidationError, model_validator

from ..source.config import ConfigError, mask_url_passwords

# Pydantic's constraint error types -> what the value must be (ctx holds the bound).
_RULES = {
    "greater_than": "greater than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}
_NUMBER_TYPES = {"int_parsing": "a whole number", "float_parsing": "a number", "int_from_float": "a whole number"}


def _shown(value: Any) -> str:
    """Numbers and booleans as given; anything else is not echoed (it may be an address with a password)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return format(value, "g")  # -5, 0.5: as written, whether the field is an int or a float
    return "the value given"


def describe(model: type[BaseModel], error: dict, where: str) -> str:
    """One Pydantic error of `model` as a sentence naming the setting (`where` + its field) and the fix."""
    field = ".".join(str(part) for part in error["loc"]) or "(the whole setting)"
    setting = f"{where}{field}"
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, ConfigError):  # our own validators already say what to fix
        return f"{setting}: {cause}"
    info = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    default = f" (the default is {info.default!r})" if info is not None and info.default is not None else ""
    rule = _RULES.get(error["type"])
    if rule:
        bound = {name: _shown(value) for name, value in context.items()}
        return (
            f"{setting} is {_shown(error.get('input'))}, but it must be {rule.format(**bound)}; set it to such "
            f"a value or leave it out{default}."
        )
    kind = _NUMBER_TYPES.get(error["type"])
    if kind:
        return f"{setting} is {_shown(error.get('input'))}, but it must be {kind}; fix it or leave it out{default}."
    return f"{setting}: {error['msg']}; fix it or leave it out{default}."


def one_line(model: type[BaseModel], exc: ValidationError, where: str) -> dg.Failure:
    """`where` prefixes the field's name ("StripeResource.", "The run config's "). The `dg.Failure` (not retried: a retry cannot fix a setting) for a refused setting of `model`."""
    errors = exc.errors()
    text = describe(model, errors[0], where)
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more setting{'s' if len(errors) > 2 else ''} refused too.)"
    return dg.Failure(description=text, allow_retries=False)


def refused_in_one_line(where: str):
    """A model validator for a config class: Pydantic's multi-line error becomes one `dg.Failure` line naming
    the field as `where` + its name (e.g. "StripeResource.max_in_flight …"). Assign it in the class body."""

    def _refused_in_one_line(cls, data, handler):
        try:
            return handler(data)
        except ValidationError as exc:
            raise one_line(cls, exc, where) from None

    return model_validator(mode="wrap")(classmethod(_refused_in_one_line))


def secret_written_in_run_config(context: dg.InitResourceContext, fields: tuple[str, ...]) -> Optional[str]:
    """Which of this resource's `fields` the run's config gives as a literal secret (a key, or a URL with a
    password) instead of `{env: NAME}`. Dagster stores a run's config as given and shows it in the UI, so
    such a value is refused when the run starts (the field validators cannot tell: they see the resolved value)."""
    run = context.dagster_run
    if run is None:
        return None
    keys = [key for key, definition in (context.all_resource_defs or {}).items() if definition is context.resource_def]
    for key in keys:
        given = ((run.run_config or {}).get("resources") or {}).get(key) or {}
        config = given.get("config") if isinstance(given, dict) else None
        for field in fields:
            value = config.get(field) if isinstance(config, dict) else None
            if isinstance(value, str) and (field == "api_key" or mask_url_passwords(value) != value):
                return field
    return None
