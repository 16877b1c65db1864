"""Values and exceptions to and from stored text (kombu's JSON by default, pickle on opt-in)."""

from __future__ import annotations

import base64
import builtins
import importlib
import pickle
from typing import Any, Protocol

from .errors import CorruptedRowError, RemoteError, SerializationError

_EXC_KEY = "__durable_exc__"


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
                return base64.b64encode(pickle.dumps(value)).decode("ascii")
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
                return base64.b64encode(pickle.dumps(exc)).decode("ascii")
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


def _encode_arg(value: Any, codec: JsonCodec) -> Any:
    if isinstance(value, BaseException):
        return {_EXC_KEY: _encode_exc(value, codec)}
    if isinstance(value, list | tuple):
        return [_encode_arg(v, codec) for v in value]
    try:
        codec.dumps(value)
    except Exception:
        return repr(value)
    return value


def _encode_exc(exc: BaseException, codec: JsonCodec) -> dict[str, Any]:
    args: list[Any] | None
    try:
        reduced = exc.__reduce__()
        raw_args = reduced[1] if isinstance(reduced, tuple) and len(reduced) > 1 else exc.args
        args = [_encode_arg(a, codec) for a in raw_args]
    except Exception:
        args = None
    return {"type": _qualname(type(exc)), "message": str(exc), "args": args}


def _decode_arg(value: Any) -> Any:
    if isinstance(value, dict) and _EXC_KEY in value:
        return _decode_exc(dict(value[_EXC_KEY]))
    if isinstance(value, list):
        return [_decode_arg(v) for v in value]
    return value


def _decode_exc(data: dict[str, Any]) -> BaseException:
    type_name = str(data.get("type"))
    message = str(data.get("message", ""))
    cls = _import_class(type_name)
    if cls is not None:
        raw = data.get("args")
        candidates: list[tuple[Any, ...]] = []
        if isinstance(raw, list):
            candidates.append(tuple(_decode_arg(a) for a in raw))
        candidates.append((message,))
        for args in candidates:
            try:
                exc: BaseException = cls(*args)
            except Exception:
                continue
            return exc
        try:  # an __init__ that builds its own message: keep the type, restore the message
            bare: BaseException = cls.__new__(cls)
            bare.args = (message,)
            return bare
        except Exception:
            pass
    return RemoteError(type_name.replace(":", "."), message)
