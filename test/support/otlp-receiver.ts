import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as protobuf from "protobufjs";

/**
 * An OTLP/HTTP trace receiver in the test's process: what a collector gets on POST /v1/traces,
 * decoded. The TypeScript kit's exporter sends JSON; the Go and Python SDKs' exporters send
 * protobuf (application/x-protobuf), decoded here with the fields of opentelemetry-proto's
 * collector/trace/v1 that the tests read (field numbers as opentelemetry-proto defines them;
 * protobuf skips the others).
 */

/** A span as the tests read it, whichever encoding it came in. */
export interface ReceivedSpan {
  /** Lower-case hex, as OTLP/JSON writes them; parentSpanId is "" for a root span. */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 2 SERVER, 3 CLIENT. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** The resource's service.name. */
  service: string;
}

export const SPAN_KIND = { SERVER: 2, CLIENT: 3 } as const;

const OTLP_TRACE_SUBSET = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  repeated KeyValue attributes = 9;
}
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; }
}
`;

const ExportTraceServiceRequest = protobuf.parse(OTLP_TRACE_SUBSET, { keepCase: false }).root.lookupType("otlp.ExportTraceServiceRequest");

interface OtlpValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
}
interface OtlpKeyValue {
  key: string;
  value?: OtlpValue;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpKeyValue[];
}
export interface OtlpExport {
  resourceSpans?: Array<{ resource?: { attributes?: OtlpKeyValue[] }; scopeSpans?: Array<{ spans?: OtlpSpan[] }> }>;
}

function valueOf(value: OtlpValue | undefined): string | number | boolean {
  if (value === undefined) return "";
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  return value.doubleValue ?? "";
}

function attributesOf(list: readonly OtlpKeyValue[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map((entry) => [entry.key, valueOf(entry.value)]));
}

/** The spans of an export in OTLP/JSON's shape (what the kits send, or what Jaeger's /api/v3 answers). */
export function spansOf(exported: OtlpExport): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of exported.resourceSpans ?? []) {
    const service = String(attributesOf(resourceSpans.resource?.attributes)["service.name"] ?? "");
    for (const scope of resourceSpans.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? "",
          name: span.name,
          kind: span.kind,
          attributes: attributesOf(span.attributes),
          service,
        });
      }
    }
  }
  return spans;
}

/** Protobuf decoded to OTLP/JSON's shape: ids as hex, 64-bit integers as strings, enums as numbers. */
function decodeProtobuf(body: Buffer): OtlpExport {
  const message = ExportTraceServiceRequest.decode(body);
  const json = ExportTraceServiceRequest.toObject(message, { longs: String, bytes: String, defaults: false, oneofs: false }) as OtlpExport;
  const hex = (base64: string | undefined) => Buffer.from(base64 ?? "", "base64").toString("hex");
  for (const resource of json.resourceSpans ?? []) {
    for (const scope of resource.scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        span.traceId = hex(span.traceId);
        span.spanId = hex(span.spanId);
        span.parentSpanId = hex(span.parentSpanId);
      }
    }
  }
  return json;
}

export interface OtlpReceiver {
  /** The base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  /** Every span received so far, in arrival order. */
  readonly spans: ReceivedSpan[];
  /** Requests that did not decode, with why (a test asserts there are none). */
  readonly rejected: string[];
  close(): Promise<void>;
}

/** Starts a receiver on 127.0.0.1 and an ephemeral port. */
export async function otlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const rejected: string[] = [];
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = Buffer.concat(chunks);
      const type = request.headers["content-type"] ?? "";
      const isProtobuf = type.startsWith("application/x-protobuf");
      if (request.method !== "POST" || request.url !== "/v1/traces") {
        response.writeHead(404).end();
        return;
      }
      try {
        const exported = isProtobuf ? decodeProtobuf(body) : (JSON.parse(body.toString("utf8")) as OtlpExport);
        spans.push(...spansOf(exported));
      } catch (error) {
        rejected.push(`${type}: ${(error as Error).message}`);
        response.writeHead(400).end();
        return;
      }
      // An empty ExportTraceServiceResponse in the request's encoding.
      if (isProtobuf) response.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      else response.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    rejected,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
