import type { Tracer } from "@opentelemetry/api";
import { Backends } from "../../cli/gateway/backends";
import { loadGatewayMethods } from "../../cli/gateway/methods";
import type { GatewayMethod } from "../../cli/gateway/methods";
import { createGateway } from "../../cli/gateway/server";
import type { CallGuard } from "../../cli/gateway/server";
import type { Logger } from "../../mesh/logger";

let methods: GatewayMethod[] | undefined;

/** The gateway's methods from generated/descriptor.binpb, read once for every test. */
export function gatewayMethods(): GatewayMethod[] {
  methods ??= loadGatewayMethods().methods;
  return methods;
}

/** A gateway on 127.0.0.1 with Backends dialling the given addresses, and its base URL. */
export interface TestGateway {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts createGateway with `targets` for the catalog and orders services (no control plane), and
 * the guard and CORS origins given.
 */
export async function startTestGateway(
  logger: Logger,
  addresses: { catalog: string; orders?: string },
  options: { guard?: CallGuard; corsOrigins?: string[]; tracer?: Tracer } = {},
): Promise<TestGateway> {
  const targets: Record<string, string> = { "shop.catalog.v1.CatalogService": addresses.catalog };
  if (addresses.orders !== undefined) targets["shop.orders.v1.OrderService"] = addresses.orders;
  const { tracer, ...gatewayOptions } = options;
  const backends = new Backends({ logger, targets, tracer });
  const gateway = createGateway({ methods: gatewayMethods(), backends, logger, ...gatewayOptions });
  const port = await gateway.listen(0, "127.0.0.1");
  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      await gateway.close();
      backends.close();
    },
  };
}

/** The NDJSON lines of a streamed answer, parsed. */
export function ndjsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
