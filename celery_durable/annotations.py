"""What a durable function's type hints say: validate its arguments (pydantic), and carry
annotated values through JSON as their own types.

Under the JSON serializer a pydantic model, a dataclass, a datetime, a Decimal, a UUID or
an enum would come back from the store (or a Celery message) as a dict or a string. An
argument or result annotated with such a type is dumped to JSON-able data on the way in
and validated back into that type on the way out, so a replay sees what the first run
saw. Plain annotations (str, int, list[str], ...) and unannotated values pass untouched.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError, create_model

_PLAIN = frozenset({int, float, str, bool, bytes, type(None), object, Any})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset, typing.Union, types.UnionType})
_CONTAINERS |= {typing.Literal}
VALIDATE_MARK = "__durable_validate_args__"


def _plain(annotation: Any) -> bool:
    """Values of this type survive JSON as they are (no dump or load needed)."""
    if annotation in _PLAIN or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin in _CONTAINERS or annotation in _CONTAINERS:
        return all(_plain(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return False


class Annotations:
    """A function's parameters and result type, read once (at first use)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(inspect.unwrap(fn))
        except Exception:  # unresolvable forward references: nothing to convert
            hints = {}
        self._params = {
            name: hints.get(name, Any)
            for name, p in self.signature.parameters.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        self._adapters = {n: TypeAdapter(t) for n, t in self._params.items() if not _plain(t)}
        result = hints.get("return", Any)
        self._result = None if _plain(result) else TypeAdapter(result)
        self._model: Any = None

    @property
    def converts(self) -> bool:
        """Does any argument or the result need converting?"""
        return bool(self._adapters) or self._result is not None

    # validation ---------------------------------------------------------
    def validate(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Check and coerce the arguments against the hints; raises
        ``pydantic.ValidationError`` (or ``TypeError`` for arguments that do not bind)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if self._model is None:
            fields: dict[str, Any] = {}
            for name, p in self.signature.parameters.items():
                annotation = self._params.get(name, Any)
                if p.kind is p.VAR_POSITIONAL:
                    annotation = tuple[Any, ...]
                elif p.kind is p.VAR_KEYWORD:
                    annotation = dict[str, Any]
                default = ... if p.default is p.empty else p.default
                fields[name] = (annotation, default)
            self._model = create_model("Arguments", **fields)
        checked = self._model.model_validate(dict(bound.arguments))
        for name in bound.arguments:
            bound.arguments[name] = getattr(checked, name)
        return tuple(bound.args), dict(bound.kwargs)

    # JSON ---------------------------------------------------------------
    def dump_args(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments as JSON-able data (annotated ones dumped)."""
        return self._convert(args, kwargs, lambda a, v: a.dump_python(v, mode="json"))

    def load_args(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Stored or received arguments back as their annotated types."""
        return self._convert(args, kwargs, lambda a, v: a.validate_python(v))

    def dump_result(self, value: Any) -> Any:
        return value if self._result is None else self._result.dump_python(value, mode="json")

    def load_result(self, value: Any) -> Any:
        return value if self._result is None else self._result.validate_python(value)

    def _convert(
        self,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        convert: Callable[[TypeAdapter[Any], Any], Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not self._adapters:
            return tuple(args), dict(kwargs)
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:  # let the call itself report arguments that do not fit
            return tuple(args), dict(kwargs)
        for name, adapter in self._adapters.items():
            if name in bound.arguments:
                bound.arguments[name] = convert(adapter, bound.arguments[name])
        return tuple(bound.args), dict(bound.kwargs)


def pydantic_args_validator(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Validate (and coerce) a function's arguments against its type hints with pydantic,
    where DBOS's guide puts it: stacked under ``@durable.workflow()`` (or a step or
    transaction), which then also validates in the caller, before anything is written or
    published. Invalid arguments raise ``pydantic.ValidationError``."""
    annotations = Annotations(fn)

    @functools.wraps(fn)
    def validating(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = annotations.validate(args, kwargs)
        return fn(*args, **kwargs)

    setattr(validating, VALIDATE_MARK, True)
    return validating


__all__ = ["VALIDATE_MARK", "Annotations", "ValidationError", "pydantic_args_validator"]
