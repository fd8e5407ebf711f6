"""Turn pydantic validation errors into one-line messages an operator can act on:
`<file or env var>: <key>: expected <what>, got <value>`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from redis_runbook.redaction import redact


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of `loc`, to list its valid keys."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [a for a in (annotation, *args) if isinstance(a, type)]
        current = next((c for c in candidates if issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _expected(error: Any) -> str:
    message: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if message.startswith("Input should be "):
        return "expected " + message[len("Input should be ") :]
    return message[0].lower() + message[1:]


def describe_validation_error(
    exc: ValidationError,
    root: type[BaseModel],
    source: str,
    env_locs: dict[tuple[str, ...], str],
) -> list[str]:
    """One message per problem, naming where the bad value came from."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc) or "(top level)"
        origin = source
        for env_loc, env_name in env_locs.items():
            if loc[: len(env_loc)] == env_loc:
                origin = f"env {env_name}"
        if error["type"] == "extra_forbidden":
            owner = _model_at(root, loc)
            valid = ", ".join(owner.model_fields) if owner else "see docs/configuration.md"
            problems.append(f"{origin}: {key}: unknown key (expected one of: {valid})")
            continue
        text = _expected(error)
        if "got" not in text and not isinstance(error["input"], dict):
            text += f", got {error['input']!r}"
        # A value quoted back may be a URL with a password in it.
        problems.append(redact(f"{origin}: {key}: {text}"))
    return problems
