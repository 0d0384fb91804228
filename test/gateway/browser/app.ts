/**
 * The browser test's page script (bundled by esbuild): gRPC-Web calls with fetch to the gateway
 * named in `?gateway=`, with the generated ts-proto codecs of shop.catalog.v1. GetProduct goes in
 * binary mode, SearchProducts in text mode (each answer chunk is padded base64), and a missing
 * product shows a trailers-only answer read from the exposed grpc-status header.
 */
import {
  GetProductRequest,
  GetProductResponse,
  SearchProductsRequest,
  SearchProductsResponse,
} from "../../../generated/ts/shop/catalog/v1/catalog";

// The few DOM members this script touches (the repository compiles with lib ES2022, no DOM).
declare const document: { getElementById(id: string): { textContent: string | null } | null };
declare const location: { search: string };
declare function atob(text: string): string;
declare function btoa(text: string): string;

/** What the test reads back from the page, besides its text. */
export interface CallOutcome {
  grpcStatus: number;
  grpcMessage: string;
  messages: number;
  isTrailersOnly: boolean;
}

interface Answer {
  messages: Uint8Array[];
  grpcStatus: number;
  grpcMessage: string;
  isTrailersOnly: boolean;
}

function frame(message: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(5 + message.length);
  new DataView(bytes.buffer).setUint32(1, message.length);
  bytes.set(message, 5);
  return bytes;
}

function toBase64(bytes: Uint8Array): string {
  return btoa(Array.from(bytes, (byte) => String.fromCharCode(byte)).join(""));
}

/** Text-mode answers may be several padded base64 chunks. */
function fromBase64(text: string): Uint8Array {
  const runs = text.match(/[^=]+={0,2}/g) ?? [];
  const binary = runs.map((run) => atob(run)).join("");
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

async function grpcWeb(gateway: string, path: string, request: Uint8Array, isText: boolean): Promise<Answer> {
  const body = frame(request);
  const response = await fetch(`${gateway}${path}`, {
    method: "POST",
    headers: {
      "content-type": isText ? "application/grpc-web-text" : "application/grpc-web+proto",
      accept: isText ? "application/grpc-web-text" : "application/grpc-web",
      "x-grpc-web": "1",
      "x-user-agent": "protomesh-browser-test/1",
    },
    body: isText ? toBase64(body) : body,
  });
  const bytes = isText ? fromBase64(await response.text()) : new Uint8Array(await response.arrayBuffer());
  const messages: Uint8Array[] = [];
  let trailers: Record<string, string> | undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset < bytes.length; ) {
    const length = view.getUint32(offset + 1);
    const payload = bytes.subarray(offset + 5, offset + 5 + length);
    if (bytes[offset] & 0x80) {
      trailers = {};
      for (const line of new TextDecoder().decode(payload).split("\r\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
    } else {
      messages.push(payload);
    }
    offset += 5 + length;
  }
  // Trailers-only: the status is in the headers, readable across origins only when exposed.
  const grpcStatus = trailers?.["grpc-status"] ?? response.headers.get("grpc-status");
  const grpcMessage = trailers?.["grpc-message"] ?? response.headers.get("grpc-message") ?? "";
  return { messages, grpcStatus: grpcStatus === null ? -1 : Number(grpcStatus), grpcMessage: decodeURIComponent(grpcMessage), isTrailersOnly: trailers === undefined };
}

function show(id: string, text: string): void {
  const element = document.getElementById(id);
  if (element !== null) element.textContent = text;
}

function outcome(answer: Answer): CallOutcome {
  return { grpcStatus: answer.grpcStatus, grpcMessage: answer.grpcMessage, messages: answer.messages.length, isTrailersOnly: answer.isTrailersOnly };
}

async function main(): Promise<Record<string, CallOutcome>> {
  const gateway = new URLSearchParams(location.search).get("gateway") ?? "";
  const catalog = "/shop.catalog.v1.CatalogService";

  const got = await grpcWeb(gateway, `${catalog}/GetProduct`, GetProductRequest.encode({ id: "sku-1001" }).finish(), false);
  show("product", got.grpcStatus === 0 ? (GetProductResponse.decode(got.messages[0]).product?.name ?? "?") : `failed: ${got.grpcStatus}`);

  const search = await grpcWeb(gateway, `${catalog}/SearchProducts`, SearchProductsRequest.encode({ query: "tea", limit: 0 }).finish(), true);
  show("search", search.messages.map((message) => SearchProductsResponse.decode(message).product?.name ?? "?").join(", "));

  const missing = await grpcWeb(gateway, `${catalog}/GetProduct`, GetProductRequest.encode({ id: "sku-0000" }).finish(), false);
  show("missing", `grpc-status ${missing.grpcStatus}: ${missing.grpcMessage}`);

  return { getProduct: outcome(got), searchProducts: outcome(search), missing: outcome(missing) };
}

const page = globalThis as { grpcWebOutcome?: Record<string, CallOutcome> | { error: string } };
main().then(
  (outcomes) => {
    page.grpcWebOutcome = outcomes;
    show("state", "done");
  },
  (error: unknown) => {
    page.grpcWebOutcome = { error: String(error) };
    show("state", `failed: ${String(error)}`);
  },
);
