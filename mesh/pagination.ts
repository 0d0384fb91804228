import { invalidArgument } from "./errors";

/** Page size when a request names none (AIP-158). */
export const DEFAULT_PAGE_SIZE = 10;
/** Larger page sizes are coerced down to this (AIP-158). */
export const MAX_PAGE_SIZE = 100;

/** A validated page request: where to start and how many to return. */
export interface PageRequest {
  offset: number;
  size: number;
}

/**
 * Validates page_size / page_token (AIP-158): a negative size or a token this server did not issue
 * is INVALID_ARGUMENT naming the field; 0 means the default; sizes above the maximum are coerced.
 */
export function parsePage(pageSize: number, pageToken: string): PageRequest {
  if (!Number.isInteger(pageSize) || pageSize < 0) throw invalidArgument("page_size", "must be >= 0");
  const size = pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(pageSize, MAX_PAGE_SIZE);
  if (pageToken === "") return { offset: 0, size };
  const match = /^o(\d{1,9})$/.exec(Buffer.from(pageToken, "base64url").toString("latin1"));
  if (!match) throw invalidArgument("page_token", "is not a token returned by this server");
  return { offset: Number(match[1]), size };
}

/** The token for the page after `offset + size`, or "" when `total` items leave no next page. */
export function nextPageToken(page: PageRequest, total: number): string {
  const next = page.offset + page.size;
  return next < total ? Buffer.from(`o${next}`, "latin1").toString("base64url") : "";
}
