from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BasketLine(_message.Message):
    __slots__ = ("product_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class QuoteBasketRequest(_message.Message):
    __slots__ = ("customer_id", "lines", "currency")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    lines: _containers.RepeatedCompositeFieldContainer[BasketLine]
    currency: str
    def __init__(self, customer_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[BasketLine, _Mapping]]] = ..., currency: _Optional[str] = ...) -> None: ...

class QuotedLine(_message.Message):
    __slots__ = ("product_id", "quantity", "unit_price_cents", "discount_cents", "line_total_cents")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    LINE_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    unit_price_cents: int
    discount_cents: int
    line_total_cents: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_cents: _Optional[int] = ..., discount_cents: _Optional[int] = ..., line_total_cents: _Optional[int] = ...) -> None: ...

class QuoteBasketResponse(_message.Message):
    __slots__ = ("lines", "subtotal_cents", "discount_cents", "total_cents", "currency", "valid_until_ms")
    LINES_FIELD_NUMBER: _ClassVar[int]
    SUBTOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[QuotedLine]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    currency: str
    valid_until_ms: int
    def __init__(self, lines: _Optional[_Iterable[_Union[QuotedLine, _Mapping]]] = ..., subtotal_cents: _Optional[int] = ..., discount_cents: _Optional[int] = ..., total_cents: _Optional[int] = ..., currency: _Optional[str] = ..., valid_until_ms: _Optional[int] = ...) -> None: ...
