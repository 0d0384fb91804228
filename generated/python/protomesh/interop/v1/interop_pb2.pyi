from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Color(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLOR_UNSPECIFIED: _ClassVar[Color]
    COLOR_RED: _ClassVar[Color]
    COLOR_FAR: _ClassVar[Color]
COLOR_UNSPECIFIED: Color
COLOR_RED: Color
COLOR_FAR: Color

class Nested(_message.Message):
    __slots__ = ("label", "value")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    label: str
    value: int
    def __init__(self, label: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("big", "big_unsigned", "big_signed", "big_fixed", "small", "ratio", "flag", "text", "blob", "color", "labels", "nested_by_id", "samples", "nested", "name", "number", "maybe")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NestedByIdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: Nested
        def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Nested, _Mapping]] = ...) -> None: ...
    BIG_FIELD_NUMBER: _ClassVar[int]
    BIG_UNSIGNED_FIELD_NUMBER: _ClassVar[int]
    BIG_SIGNED_FIELD_NUMBER: _ClassVar[int]
    BIG_FIXED_FIELD_NUMBER: _ClassVar[int]
    SMALL_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NESTED_BY_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NESTED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    MAYBE_FIELD_NUMBER: _ClassVar[int]
    big: int
    big_unsigned: int
    big_signed: int
    big_fixed: int
    small: int
    ratio: float
    flag: bool
    text: str
    blob: bytes
    color: Color
    labels: _containers.ScalarMap[str, str]
    nested_by_id: _containers.MessageMap[int, Nested]
    samples: _containers.RepeatedScalarFieldContainer[int]
    nested: Nested
    name: str
    number: int
    maybe: int
    def __init__(self, big: _Optional[int] = ..., big_unsigned: _Optional[int] = ..., big_signed: _Optional[int] = ..., big_fixed: _Optional[int] = ..., small: _Optional[int] = ..., ratio: _Optional[float] = ..., flag: _Optional[bool] = ..., text: _Optional[str] = ..., blob: _Optional[bytes] = ..., color: _Optional[_Union[Color, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., nested_by_id: _Optional[_Mapping[int, Nested]] = ..., samples: _Optional[_Iterable[int]] = ..., nested: _Optional[_Union[Nested, _Mapping]] = ..., name: _Optional[str] = ..., number: _Optional[int] = ..., maybe: _Optional[int] = ...) -> None: ...

class EchoRequest(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: Payload
    def __init__(self, payload: _Optional[_Union[Payload, _Mapping]] = ...) -> None: ...

class MetadataEntry(_message.Message):
    __slots__ = ("key", "text", "binary")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    key: str
    text: str
    binary: bytes
    def __init__(self, key: _Optional[str] = ..., text: _Optional[str] = ..., binary: _Optional[bytes] = ...) -> None: ...

class EchoResponse(_message.Message):
    __slots__ = ("payload", "metadata", "language", "endpoint")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    payload: Payload
    metadata: _containers.RepeatedCompositeFieldContainer[MetadataEntry]
    language: str
    endpoint: str
    def __init__(self, payload: _Optional[_Union[Payload, _Mapping]] = ..., metadata: _Optional[_Iterable[_Union[MetadataEntry, _Mapping]]] = ..., language: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class HoldRequest(_message.Message):
    __slots__ = ("hold_ms", "relay_to")
    HOLD_MS_FIELD_NUMBER: _ClassVar[int]
    RELAY_TO_FIELD_NUMBER: _ClassVar[int]
    hold_ms: int
    relay_to: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hold_ms: _Optional[int] = ..., relay_to: _Optional[_Iterable[str]] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ("language", "endpoint", "remaining_ms", "request_id")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    language: str
    endpoint: str
    remaining_ms: int
    request_id: str
    def __init__(self, language: _Optional[str] = ..., endpoint: _Optional[str] = ..., remaining_ms: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class HoldResponse(_message.Message):
    __slots__ = ("hops",)
    HOPS_FIELD_NUMBER: _ClassVar[int]
    hops: _containers.RepeatedCompositeFieldContainer[Hop]
    def __init__(self, hops: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ...) -> None: ...
