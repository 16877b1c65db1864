"""Values and exceptions to and from stored text (kombu's JSON by default, pickle on opt-in)."""

from __future__ import annotations

import base64
import builtins
import importlib
import io
import pickle
import traceback
from typing import Any, Protocol

from .errors import CorruptedRowError, RemoteError, SerializationError

_EXC_KEY = "__durable_exc__"
#: how a stored error marks an error nested in it (an argument or attribute)
NESTED_ERROR_KEY = _EXC_KEY


class JsonCodec(Protocol):
    """The JSON dialect stored text is written in (the integration layer gives kombu's,
    which knows datetime, UUID and Decimal)."""

    def dumps(self, value: Any) -> str: ...

    def loads(self, text: str) -> Any: ...


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(path: str) -> type[BaseException] | None:
    module_name, _, qual = path.partition(":")
    try:
        obj: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


class Serializer:
    """Encodes inputs, outputs and errors as text; ``name`` is ``"json"`` or ``"pickle"``."""

    def __init__(self, codec: JsonCodec, name: str = "json") -> None:
        if name not in ("json", "pickle"):
            raise SerializationError(f"unknown durable serializer {name!r} (json or pickle)")
        self.codec = codec
        self.name = name

    # values -------------------------------------------------------------
    def dumps(self, value: Any, what: str = "value") -> str:
        """Encode ``value``; raises SerializationError naming ``what`` when it cannot."""
        try:
            if self.name == "pickle":
                return _pickle(value)
            return self.codec.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"cannot serialize {what} with the {self.name!r} serializer: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def loads(self, text: str | None, what: str = "value") -> Any:
        if text is None:
            return None
        try:
            if self.name == "pickle" and not text.lstrip().startswith(("{", "[", '"')):
                return pickle.loads(base64.b64decode(text.encode("ascii")))
            return self.codec.loads(text)
        except Exception as exc:
            raise CorruptedRowError(what, f"{type(exc).__name__}: {exc}") from exc

    # exceptions ---------------------------------------------------------
    def dumps_exception(self, exc: BaseException) -> str:
        if self.name == "pickle":
            try:
                return _pickle(exc)
            except Exception:
                pass  # fall back to the portable JSON form
        return self.codec.dumps(_encode_exc(exc, self.codec))

    def loads_exception(self, text: str) -> BaseException:
        stripped = text.lstrip()
        if not stripped.startswith("{"):
            if self.name != "pickle":  # never unpickle stored text without the opt-in
                raise CorruptedRowError("error", f"not JSON: {text[:80]!r}")
            try:
                obj = pickle.loads(base64.b64decode(text.encode("ascii")))
            except Exception as exc:
                raise CorruptedRowError("error", f"{type(exc).__name__}: {exc}") from exc
            if isinstance(obj, BaseException):
                return obj
            raise CorruptedRowError("error", f"not an exception: {obj!r}")
        try:
            data = self.codec.loads(text)
        except Exception as exc:
            raise CorruptedRowError("error", f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(data, dict) or "type" not in data:
            raise CorruptedRowError("error", f"unexpected shape: {text[:200]!r}")
        return _decode_exc(data)


_MAX_CAUSES = 8  # how deep a cause chain (``raise ... from ...``) is kept
_MAX_TRACEBACK = 8000  # characters of traceback text kept with a stored error


def _attributes(exc: BaseException) -> dict[str, Any]:
    """What an exception instance holds besides ``args`` (Python's own ``__notes__``,
    ``__traceback__`` and the like left out)."""
    return {k: v for k, v in getattr(exc, "__dict__", {}).items() if not k.startswith("__")}


def _encode_value(value: Any, codec: JsonCodec) -> Any:
    """One argument or attribute: as it is when the codec takes it, nested exceptions in
    full, containers item by item, anything else as its ``repr`` (alone: never the error)."""
    if isinstance(value, BaseException):
        return {_EXC_KEY: _encode_exc(value, codec)}
    if isinstance(value, list | tuple):
        return [_encode_value(v, codec) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode_value(v, codec) for k, v in value.items()}
    try:
        codec.dumps(value)
    except Exception:
        return repr(value)
    return value


def _encode_exc(exc: BaseException, codec: JsonCodec, depth: int = 0) -> dict[str, Any]:
    """Type, message, ``args``, instance attributes, the traceback text and the cause."""
    data: dict[str, Any] = {
        "v": 2,
        "type": _qualname(type(exc)),
        "message": str(exc),
        "args": [_encode_value(a, codec) for a in exc.args],
        "attrs": {k: _encode_value(v, codec) for k, v in _attributes(exc).items()},
    }
    if exc.__traceback__ is not None:
        data["traceback"] = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
    if exc.__cause__ is not None and depth < _MAX_CAUSES:
        data["cause"] = _encode_exc(exc.__cause__, codec, depth + 1)
    return data


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and _EXC_KEY in value:
        return _decode_exc(dict(value[_EXC_KEY]))
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode_value(v) for k, v in value.items()}
    return value


def _decode_exc(data: dict[str, Any]) -> BaseException:
    type_name = str(data.get("type"))
    message = str(data.get("message", ""))
    cls = _import_class(type_name)
    raw_args = data.get("args")
    args = tuple(_decode_value(a) for a in raw_args) if isinstance(raw_args, list) else ()
    exc: BaseException | None = None
    if cls is not None:
        if data.get("v") == 2:
            attrs = data.get("attrs")
            exc = rebuild(cls, args, _decode_value(attrs) if isinstance(attrs, dict) else {})
        else:  # a row from before version 2: args as __reduce__ gave them, no attributes
            exc = _construct(cls, [args, (message,)])
    if exc is None:
        exc = RemoteError(type_name.replace(":", "."), message)
    cause = data.get("cause")
    if isinstance(cause, dict):
        exc.__cause__ = _decode_exc(cause)
    return exc


def rebuild(
    cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any]
) -> BaseException | None:
    """The exception as it was raised, without calling ``__init__`` (as pickle rebuilds
    objects): ``__new__`` with its ``args``, then its instance attributes. None when the
    class refuses (its ``__new__`` wants other arguments)."""
    try:
        exc = cls.__new__(cls, *args)
        exc.args = args
    except Exception:
        return _construct(cls, [args])
    for key, value in attrs.items():
        try:
            setattr(exc, key, value)
        except Exception:  # a read-only property: the attribute degrades, not the error
            continue
    return exc


def _construct(cls: type[BaseException], candidates: list[tuple[Any, ...]]) -> BaseException | None:
    for args in candidates:
        try:
            return cls(*args)
        except Exception:
            continue
    return None


def _rebuild_pickled(
    cls: type[BaseException], args: tuple[Any, ...], attrs: dict[str, Any], cause: Any
) -> BaseException:
    exc = rebuild(cls, args, attrs) or RemoteError(_qualname(cls).replace(":", "."), str(args))
    exc.__cause__ = cause
    return exc


class _Pickler(pickle.Pickler):
    """Pickles exceptions (anywhere in a value) as ``rebuild`` restores them: Python's own
    reduction calls ``cls(*args)``, which fails for an ``__init__`` taking other arguments
    than the ``args`` it passes to ``Exception.__init__``."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            attrs = {
                k: v for k, v in getattr(obj, "__dict__", {}).items() if not k.startswith("__")
            }
            return _rebuild_pickled, (type(obj), obj.args, attrs, obj.__cause__)
        return NotImplemented


def _pickle(value: Any) -> str:
    buffer = io.BytesIO()
    _Pickler(buffer).dump(value)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
