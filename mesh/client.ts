import { credentials as grpcCredentials } from "@grpc/grpc-js";
import type { ChannelCredentials, ChannelOptions, Client, ClientOptions, Interceptor } from "@grpc/grpc-js";
import { createLogger } from "./logger";
import type { Logger } from "./logger";
import { deadlinePolicy } from "./deadlines";
import { deadlineInterceptor } from "./interceptor-deadline";
import { clientLogInterceptor } from "./interceptor-client-log";

/** A generated client class, e.g. ts-proto's `CatalogServiceClient`. */
export type ClientConstructor<C extends Client> = new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => C;

/** Options of {@link createClient}. */
export interface MeshClientOptions {
  logger?: Logger;
  /** Deadline of calls that name none (ms); see DEFAULT_DEADLINE_MS. */
  defaultDeadlineMs?: number;
  /** Per-method deadlines (ms), keyed by method name or full path. */
  methodDeadlinesMs?: Record<string, number>;
  credentials?: ChannelCredentials;
  /** Interceptors run after protomesh's own (deadline, log). */
  interceptors?: Interceptor[];
  channelOptions?: ChannelOptions;
}

/**
 * Creates a typed client whose every call has a deadline (explicit, or the configured default for
 * the method; never none) and is logged when it ends. `target` is any grpc-js target
 * ("127.0.0.1:50051", "dns:///catalog:50051").
 */
export function createClient<C extends Client>(
  clientClass: ClientConstructor<C>,
  target: string,
  options: MeshClientOptions = {},
): C {
  const policy = deadlinePolicy({ defaultMs: options.defaultDeadlineMs, methodsMs: options.methodDeadlinesMs });
  const logger = (options.logger ?? createLogger()).child({ component: "client", target });
  return new clientClass(target, options.credentials ?? grpcCredentials.createInsecure(), {
    ...options.channelOptions,
    interceptors: [deadlineInterceptor(policy), clientLogInterceptor(logger), ...(options.interceptors ?? [])],
  });
}
