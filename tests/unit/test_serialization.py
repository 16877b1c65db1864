"""Values and exceptions to and from stored text: JSON by default, pickle on opt-in."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from celery_durable.errors import (
    CorruptedRowError,
    MaxStepRetriesExceeded,
    RemoteError,
    SerializationError,
)
from celery_durable.integration.codec import KOMBU_JSON
from celery_durable.serialization import Serializer


class PaymentDeclined(Exception):
    """A user exception defined at module level: importable, so it comes back as itself."""


class CodedError(Exception):
    """Custom __init__ whose arguments are passed on to Exception."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class FormattedError(Exception):
    """Custom __init__ that formats its own message (args differ from the signature)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"[{code}] {detail}")
        self.code = code


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


@pytest.fixture
def ser() -> Serializer:
    return Serializer(KOMBU_JSON)


def roundtrip_exc(ser: Serializer, exc: BaseException) -> BaseException:
    text = ser.dumps_exception(exc)
    assert isinstance(text, str)
    return ser.loads_exception(text)


def assert_same_error(got: BaseException, original: BaseException) -> None:
    assert type(got) is type(original)
    assert str(got) == str(original)


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -3,
        1.5,
        1e-300,
        "text é ✓",
        True,
        [1, "a", None, [2.25]],
        {"a": 1, "b": [1, 2], "c": {"d": None}},
        datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        {"when": datetime(2030, 12, 31, 23, 59, tzinfo=UTC), "day": date(2024, 2, 29)},
        UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("10.25"),
    ],
    ids=repr,
)
def test_json_values_round_trip(ser: Serializer, value: Any) -> None:
    text = ser.dumps(value)
    assert isinstance(text, str)
    assert ser.loads(text) == value


def test_loads_none_is_none(ser: Serializer) -> None:
    assert ser.loads(None) is None


@pytest.mark.parametrize(
    ("value", "type_name"), [({1, 2}, "set"), (object(), "object"), (Point(1, 2), "Point")]
)
def test_unserializable_values_raise_a_clear_serialization_error(
    ser: Serializer, value: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError) as info:
        ser.dumps(value, what="the inputs of workflow 'w'")
    assert isinstance(info.value, TypeError)
    message = str(info.value)
    assert "the inputs of workflow 'w'" in message
    assert "json" in message
    assert type_name in message


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value"), KeyError("missing"), RuntimeError(), ZeroDivisionError("div")],
    ids=repr,
)
def test_builtin_exceptions_round_trip(ser: Serializer, exc: BaseException) -> None:
    assert_same_error(roundtrip_exc(ser, exc), exc)


def test_module_level_custom_exception_round_trips(ser: Serializer) -> None:
    original = PaymentDeclined("card 42 declined")
    assert_same_error(roundtrip_exc(ser, original), original)


def test_exception_with_custom_init_args_round_trips(ser: Serializer) -> None:
    got = roundtrip_exc(ser, CodedError(402, "payment required"))
    assert_same_error(got, CodedError(402, "payment required"))
    assert isinstance(got, CodedError)
    assert (got.code, got.detail) == (402, "payment required")


def test_exception_that_formats_its_own_message_round_trips(ser: Serializer) -> None:
    original = FormattedError(409, "conflict")
    assert_same_error(roundtrip_exc(ser, original), original)


def test_max_step_retries_exceeded_round_trips_with_its_errors(ser: Serializer) -> None:
    errors: list[BaseException] = [ValueError("one"), PaymentDeclined("two"), KeyError("three")]
    original = MaxStepRetriesExceeded("shop.charge", 2, errors)
    got = roundtrip_exc(ser, original)
    assert isinstance(got, MaxStepRetriesExceeded)
    assert (got.step_name, got.max_retries) == ("shop.charge", 2)
    assert str(got) == str(original)
    assert len(got.errors) == 3
    for back, sent in zip(got.errors, errors, strict=True):
        assert_same_error(back, sent)


def test_exception_class_that_cannot_be_imported_becomes_remote_error(ser: Serializer) -> None:
    class LocalOnly(Exception):
        pass

    got = roundtrip_exc(ser, LocalOnly("only here"))
    assert isinstance(got, RemoteError)
    assert got.type_name.endswith("LocalOnly")
    assert got.message == "only here"
    assert "LocalOnly" in str(got) and "only here" in str(got)


def test_exception_of_a_vanished_module_becomes_remote_error(ser: Serializer) -> None:
    text = ser.dumps_exception(PaymentDeclined("gone"))
    text = text.replace(__name__, "no_such_module_anywhere")
    got = ser.loads_exception(text)
    assert isinstance(got, RemoteError)
    assert got.type_name == "no_such_module_anywhere.PaymentDeclined"
    assert got.message == "gone"


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", '{"a": }'])
def test_corrupted_value_raises_corrupted_row_error(ser: Serializer, text: str) -> None:
    with pytest.raises(CorruptedRowError) as info:
        ser.loads(text, what="step output")
    assert "step output" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "{}", '{"message": "no type"}', "???", "[1]"])
def test_corrupted_exception_raises_corrupted_row_error(ser: Serializer, text: str) -> None:
    with pytest.raises(CorruptedRowError):
        ser.loads_exception(text)


def test_pickle_serializer_round_trips_what_json_cannot() -> None:
    pickled = Serializer(KOMBU_JSON, "pickle")
    value = {"points": {Point(1, 2), Point(3, 4)}, "at": datetime(2024, 5, 6, tzinfo=UTC)}
    assert pickled.loads(pickled.dumps(value)) == value
    with pytest.raises(SerializationError):
        Serializer(KOMBU_JSON).dumps(value)


def test_pickle_serializer_keeps_exceptions_json_would_lose() -> None:
    pickled = Serializer(KOMBU_JSON, "pickle")
    got = pickled.loads_exception(pickled.dumps_exception(CodedError(7, "seven")))
    assert isinstance(got, CodedError)
    assert got.code == 7


def test_pickle_serializer_still_reads_json_rows() -> None:
    assert Serializer(KOMBU_JSON, "pickle").loads(Serializer(KOMBU_JSON).dumps({"a": [1, 2]})) == {
        "a": [1, 2]
    }


def test_pickle_corrupted_text_raises_corrupted_row_error() -> None:
    with pytest.raises(CorruptedRowError):
        Serializer(KOMBU_JSON, "pickle").loads("bm90IGEgcGlja2xl")


def test_unknown_serializer_name_is_rejected() -> None:
    with pytest.raises(SerializationError):
        Serializer(KOMBU_JSON, "yaml")


class InsufficientInventoryError(Exception):
    """The DBOS guide's example: several required arguments, a formatted message."""

    def __init__(self, product_id: str, requested: int, available: int) -> None:
        self.product_id = product_id
        self.requested = requested
        self.available = available
        super().__init__(
            f"Insufficient inventory for {product_id}: requested {requested}, available {available}"
        )


class PaymentDeclinedError(Exception):
    """The guide's other example: its __init__ formats the message from the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Payment declined: {reason}")


def both() -> list[Serializer]:
    return [Serializer(KOMBU_JSON), Serializer(KOMBU_JSON, "pickle")]


@pytest.mark.parametrize("ser", both(), ids=["json", "pickle"])
def test_the_guides_errors_come_back_with_every_attribute(ser: Serializer) -> None:
    inventory = roundtrip_exc(ser, InsufficientInventoryError("sku-1", 5, 2))
    assert isinstance(inventory, InsufficientInventoryError)
    assert (inventory.product_id, inventory.requested, inventory.available) == ("sku-1", 5, 2)
    assert str(inventory) == "Insufficient inventory for sku-1: requested 5, available 2"
    assert inventory.args == ("Insufficient inventory for sku-1: requested 5, available 2",)
    declined = roundtrip_exc(ser, PaymentDeclinedError("over limit"))
    assert isinstance(declined, PaymentDeclinedError)
    assert declined.reason == "over limit"
    assert str(declined) == "Payment declined: over limit"  # not formatted a second time


@pytest.mark.parametrize("ser", both(), ids=["json", "pickle"])
def test_attempt_errors_inside_max_retries_keep_their_attributes(ser: Serializer) -> None:
    original = MaxStepRetriesExceeded(
        "shop.reserve", 1, [InsufficientInventoryError("a", 1, 0), PaymentDeclinedError("x")]
    )
    got = roundtrip_exc(ser, original)
    assert isinstance(got, MaxStepRetriesExceeded)
    first, second = got.errors
    assert isinstance(first, InsufficientInventoryError) and first.product_id == "a"
    assert isinstance(second, PaymentDeclinedError) and second.reason == "x"
    assert str(got) == str(original)


def test_an_attribute_json_cannot_hold_degrades_alone(ser: Serializer) -> None:
    original = CodedError(500, "boom")
    original.where = Point(1, 2)  # type: ignore[attr-defined]
    got = roundtrip_exc(ser, original)
    assert isinstance(got, CodedError)
    assert (got.code, got.detail, got.args) == (500, "boom", (500, "boom"))
    assert isinstance(got.where, str) and "Point" in got.where  # type: ignore[attr-defined]


def test_the_cause_chain_is_kept(ser: Serializer) -> None:
    try:
        try:
            raise KeyError("sku-9")
        except KeyError as inner:
            raise PaymentDeclinedError("lookup failed") from inner
    except PaymentDeclinedError as exc:
        text = ser.dumps_exception(exc)
    got = ser.loads_exception(text)
    assert isinstance(got, PaymentDeclinedError) and got.reason == "lookup failed"
    assert isinstance(got.__cause__, KeyError) and got.__cause__.args == ("sku-9",)
    stored = ser.codec.loads(text)
    assert "raise PaymentDeclinedError" in stored["traceback"]  # for people reading the row
