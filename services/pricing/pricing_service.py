"""shop.pricing.v1.PricingService: prices a basket from the catalog's unit prices.

Arithmetic, in integer cents (never floats):

- A line's subtotal is ``unit_price_cents * quantity``. A line of 5 or more units gets 10 % off its
  subtotal, rounded down to the cent: ``discount_cents = subtotal * 10 // 100``;
  ``line_total_cents = subtotal - discount_cents``.
- The basket's ``subtotal_cents`` is the sum of the lines' subtotals, before any discount.
- When the sum of the line totals (the subtotal after line discounts) is 100.00 (10000 cents) or
  more, the basket gets 5 % off it, rounded down: ``basket_discount = after_lines * 5 // 100``.
- ``discount_cents`` is every discount (the lines' and the basket's); ``total_cents`` is
  ``subtotal_cents - discount_cents``.
- ``currency`` is EUR (the catalog prices in EUR; an empty request currency means EUR, any other
  is INVALID_ARGUMENT). ``valid_until_ms`` is now + 15 minutes.

Unit prices come from shop.catalog.v1.CatalogService/GetProduct, one call per distinct product,
in parallel, each inheriting the inbound call's deadline (the kit's client). A product the catalog
does not know is NOT_FOUND naming ``lines[i].product_id``; any other catalog failure keeps its code,
with details prefixed ``catalog: ``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from protomesh_kit import MeshError, invalid_argument
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.pricing.v1 import pricing_pb2, pricing_pb2_grpc

CURRENCY = "EUR"
MAX_LINES = 100
MAX_QUANTITY = 1000
#: Lines of at least this many units get LINE_DISCOUNT_PERCENT off.
BULK_QUANTITY = 5
LINE_DISCOUNT_PERCENT = 10
#: Baskets worth at least this (after line discounts) get BASKET_DISCOUNT_PERCENT off.
BASKET_THRESHOLD_CENTS = 10_000
BASKET_DISCOUNT_PERCENT = 5
QUOTE_VALIDITY_MS = 15 * 60 * 1000


def validate(request: pricing_pb2.QuoteBasketRequest) -> None:
    """Raises INVALID_ARGUMENT naming the first field that is not acceptable."""
    if not request.customer_id:
        raise invalid_argument("customer_id", "is required")
    if request.currency not in ("", CURRENCY):
        raise invalid_argument("currency", f"must be {CURRENCY} (the catalog prices in {CURRENCY}), got {request.currency!r}")
    if not request.lines:
        raise invalid_argument("lines", "must not be empty")
    if len(request.lines) > MAX_LINES:
        raise invalid_argument("lines", f"at most {MAX_LINES} lines, got {len(request.lines)}")
    for i, line in enumerate(request.lines):
        if not line.product_id:
            raise invalid_argument(f"lines[{i}].product_id", "is required")
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise invalid_argument(f"lines[{i}].quantity", f"must be from 1 to {MAX_QUANTITY}, got {line.quantity}")


def quote(
    lines: list[tuple[str, int, int]], now_ms: int
) -> pricing_pb2.QuoteBasketResponse:
    """The quote of ``lines`` (product id, quantity, unit price in cents); see the module's docstring."""
    quoted = []
    subtotal = 0
    line_discounts = 0
    for product_id, quantity, unit_cents in lines:
        line_subtotal = unit_cents * quantity
        discount = line_subtotal * LINE_DISCOUNT_PERCENT // 100 if quantity >= BULK_QUANTITY else 0
        quoted.append(
            pricing_pb2.QuotedLine(
                product_id=product_id,
                quantity=quantity,
                unit_price_cents=unit_cents,
                discount_cents=discount,
                line_total_cents=line_subtotal - discount,
            )
        )
        subtotal += line_subtotal
        line_discounts += discount
    after_lines = subtotal - line_discounts
    basket_discount = after_lines * BASKET_DISCOUNT_PERCENT // 100 if after_lines >= BASKET_THRESHOLD_CENTS else 0
    discount = line_discounts + basket_discount
    return pricing_pb2.QuoteBasketResponse(
        lines=quoted,
        subtotal_cents=subtotal,
        discount_cents=discount,
        total_cents=subtotal - discount,
        currency=CURRENCY,
        valid_until_ms=now_ms + QUOTE_VALIDITY_MS,
    )


class PricingService(pricing_pb2_grpc.PricingServiceServicer):
    """The servicer; ``catalog`` is a kit channel to the catalog, ``now_ms`` the clock."""

    def __init__(self, catalog: grpc.aio.Channel, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self._now_ms = now_ms

    async def QuoteBasket(
        self, request: pricing_pb2.QuoteBasketRequest, context: grpc.aio.ServicerContext
    ) -> pricing_pb2.QuoteBasketResponse:
        validate(request)
        first_line: dict[str, int] = {}
        for i, line in enumerate(request.lines):
            first_line.setdefault(line.product_id, i)
        prices = await _all(self._unit_price(product_id, i) for product_id, i in first_line.items())
        unit_cents = dict(zip(first_line, prices))
        return quote([(line.product_id, line.quantity, unit_cents[line.product_id]) for line in request.lines], self._now_ms())

    async def _unit_price(self, product_id: str, line: int) -> int:
        field = f"lines[{line}].product_id"
        try:
            response = await self._catalog.GetProduct(catalog_pb2.GetProductRequest(id=product_id))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise MeshError(grpc.StatusCode.NOT_FOUND, f"{field}: product {product_id!r} is not in the catalog") from None
            raise MeshError.from_rpc_error(error, prefix="catalog: ") from None
        product = response.product
        if product.currency and product.currency != CURRENCY:
            raise MeshError(grpc.StatusCode.FAILED_PRECONDITION, f"{field}: the catalog prices it in {product.currency}, not {CURRENCY}")
        return product.price_cents


async def _all(coroutines: object) -> list[int]:
    """Runs the coroutines concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]  # type: ignore[attr-defined]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
