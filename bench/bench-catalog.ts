import type { ServerWritableStream } from "@grpc/grpc-js";
import { GetProductResponse } from "../generated/ts/shop/catalog/v1/catalog";
import type {
  CatalogServiceServer,
  Product,
  SearchProductsRequest,
  SearchProductsResponse,
} from "../generated/ts/shop/catalog/v1/catalog";
import { catalogService } from "../services/catalog/catalog-service";

/**
 * The catalog service as every benchmark server hosts it: the real handlers of services/catalog over
 * a product list sized for measurement, plus one bench-only query that keeps a stream open (B6).
 * The plain grpc-js baseline and the protomesh server register exactly this, with the same ts-proto
 * serializers, so a difference between them is the server kit and nothing else.
 */

/** Encoded size of the GetProduct response the unary scenarios ask for (the "~1 KiB message"). */
export const UNARY_RESPONSE_BYTES = 1024;

/** The id GetProduct is called with: one field in the request. */
export const BENCH_PRODUCT_ID = "sku-bench";

/** SearchProducts query matched by every streaming product, by name (so matching stays cheap). */
export const STREAM_QUERY = "bench-stream";

/** Messages one SearchProducts call streams for {@link STREAM_QUERY} (B5). */
export const STREAM_MESSAGES_PER_CALL = 200;

/** SearchProducts query that the bench service answers with one message and then holds open (B6). */
export const HOLD_QUERY = "bench-hold";

const STREAM_PRODUCT_DESCRIPTION = "d".repeat(900);

/** The product GetProduct returns: padded so that its encoded GetProductResponse is UNARY_RESPONSE_BYTES. */
export const BENCH_PRODUCT: Product = padToSize(
  { id: BENCH_PRODUCT_ID, name: "Benchmark blend", description: "", priceCents: 1990, currency: "EUR", tags: ["bench"] },
  UNARY_RESPONSE_BYTES,
);

/** The products of the bench catalog: the unary one and STREAM_MESSAGES_PER_CALL streaming ones. */
export const BENCH_PRODUCTS: readonly Product[] = [
  BENCH_PRODUCT,
  ...Array.from({ length: STREAM_MESSAGES_PER_CALL }, (_, index) => ({
    id: `sku-stream-${String(index).padStart(4, "0")}`,
    name: `${STREAM_QUERY} ${index}`,
    description: STREAM_PRODUCT_DESCRIPTION,
    priceCents: 100 + index,
    currency: "EUR",
    tags: ["bench"],
  })),
];

/** Counts the streams held open by {@link HOLD_QUERY}, so the harness knows when all of them arrived. */
export class HeldStreams {
  private open = 0;

  /** Streams held open now. */
  get count(): number {
    return this.open;
  }

  /** Sends one message on `call` and keeps it open until the caller goes away. */
  hold(call: ServerWritableStream<SearchProductsRequest, SearchProductsResponse>): void {
    this.open += 1;
    call.once("cancelled", () => {
      this.open -= 1;
    });
    call.write({ product: BENCH_PRODUCT });
  }
}

/** The bench catalog's handlers; `held` tracks the streams kept open for B6. */
export function benchCatalog(held: HeldStreams): CatalogServiceServer {
  const catalog = catalogService(BENCH_PRODUCTS);
  return {
    ...catalog,
    searchProducts: (call) => {
      if (call.request.query === HOLD_QUERY) {
        held.hold(call);
        return;
      }
      catalog.searchProducts(call);
    },
  };
}

function padToSize(product: Product, targetBytes: number): Product {
  // The description's length prefix is a varint, so its own size moves with the padding: step until exact.
  let padding = Math.max(0, targetBytes - GetProductResponse.encode({ product }).finish().length - 2);
  for (let attempt = 0; attempt < 8; attempt += 1) {
    const candidate = { ...product, description: "b".repeat(padding) };
    const size = GetProductResponse.encode({ product: candidate }).finish().length;
    if (size === targetBytes) return candidate;
    padding += targetBytes - size;
  }
  throw new Error(`bench catalog: cannot pad the product to ${targetBytes} bytes`);
}
