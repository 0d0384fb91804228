"""The x-request-id a request carries across hops (mesh/request-id.ts)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

#: Metadata key that carries a request's id (the de-facto header of proxies and meshes).
REQUEST_ID_KEY = "x-request-id"

# Printable ASCII without spaces, at most 128 characters: anything else is replaced, so a garbage
# header can neither break a log line nor grow without bound.
_ACCEPTABLE = re.compile(r"[\x21-\x7e]{1,128}")


def is_acceptable_request_id(value: Any) -> bool:
    """True when ``value`` may be carried as an x-request-id as it is."""
    return isinstance(value, str) and _ACCEPTABLE.fullmatch(value) is not None


def request_id_from(metadata: Iterable[Any] | None) -> str:
    """The request id carried in ``metadata`` (key/value pairs) when acceptable, else a new UUID."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            if is_acceptable_request_id(value):
                return value
            break
    return str(uuid.uuid4())
