import { status } from "@grpc/grpc-js";
import type {
  CatalogServiceServer,
  GetProductRequest,
  GetProductResponse,
  ListProductsRequest,
  ListProductsResponse,
  Product,
  SearchProductsRequest,
  SearchProductsResponse,
} from "../../generated/ts/shop/catalog/v1/catalog";
import { MeshError, invalidArgument, nextPageToken, parsePage, serverStream, unary } from "../../mesh";
import { SEED_PRODUCTS } from "./seed";

/** Longest search query accepted, in characters. */
export const MAX_QUERY_LENGTH = 200;

/** The catalog's handlers over an in-memory product list, sorted by id. */
export function catalogService(products: readonly Product[] = SEED_PRODUCTS): CatalogServiceServer {
  const sorted = [...products].sort((a, b) => a.id.localeCompare(b.id));
  const byId = new Map(sorted.map((product) => [product.id, product]));

  return {
    getProduct: unary<GetProductRequest, GetProductResponse>(({ id }) => {
      if (id === "") throw invalidArgument("id", "is required");
      const product = byId.get(id);
      if (!product) throw new MeshError(status.NOT_FOUND, `product ${JSON.stringify(id)} not found`);
      return { product };
    }),

    listProducts: unary<ListProductsRequest, ListProductsResponse>(({ pageSize, pageToken }) => {
      const page = parsePage(pageSize, pageToken);
      return {
        products: sorted.slice(page.offset, page.offset + page.size),
        nextPageToken: nextPageToken(page, sorted.length),
        totalSize: sorted.length,
      };
    }),

    searchProducts: serverStream<SearchProductsRequest, SearchProductsResponse>(({ query, limit }) => {
      if (query.trim() === "") throw invalidArgument("query", "is required");
      if (query.length > MAX_QUERY_LENGTH) throw invalidArgument("query", `must be at most ${MAX_QUERY_LENGTH} characters`);
      if (limit < 0) throw invalidArgument("limit", "must be >= 0");
      const needle = query.toLowerCase();
      const matches = sorted.filter((product) =>
        [product.name, product.description, ...product.tags].some((text) => text.toLowerCase().includes(needle)),
      );
      return (limit > 0 ? matches.slice(0, limit) : matches).map((product) => ({ product }));
    }),
  };
}
