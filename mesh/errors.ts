import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError, StatusObject } from "@grpc/grpc-js";

/** The details sent to a caller when a handler fails unexpectedly; the cause goes to the log only. */
export const INTERNAL_DETAILS = "internal error";

/**
 * The one error type of protomesh: a gRPC status code, the details a caller may see and an optional
 * cause that stays in the logs. Handlers throw it to end a call with a chosen status.
 */
export class MeshError extends Error {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;

  constructor(code: status, details: string, options: { cause?: unknown; metadata?: Metadata } = {}) {
    super(`${status[code]}: ${details}`, { cause: options.cause });
    this.name = "MeshError";
    this.code = code;
    this.details = details;
    this.metadata = options.metadata ?? new Metadata();
  }

  /**
   * Turns anything thrown into a MeshError. A MeshError or a gRPC ServiceError keeps its status;
   * anything else becomes INTERNAL with generic details, the original kept as `cause`.
   */
  static from(error: unknown): MeshError {
    if (error instanceof MeshError) return error;
    if (isServiceError(error)) {
      return new MeshError(error.code, error.details, { cause: error, metadata: error.metadata });
    }
    return new MeshError(status.INTERNAL, INTERNAL_DETAILS, { cause: error });
  }

  /** The status object grpc-js expects in a callback or `emit("error")`. */
  toStatus(): Partial<StatusObject> {
    return { code: this.code, details: this.details, metadata: this.metadata };
  }
}

/** Shorthand for the most common handler failure: a request field that is not acceptable. */
export function invalidArgument(field: string, problem: string): MeshError {
  return new MeshError(status.INVALID_ARGUMENT, `${field}: ${problem}`);
}

/** True when `error` is a ServiceError produced by grpc-js (a client call that failed). */
export function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    typeof (error as Partial<ServiceError>).details === "string"
  );
}

/**
 * Whether a status code counts as a failure of the server (for logs at warn level, and later for
 * breakers, outlier ejection and metrics). Caller mistakes (INVALID_ARGUMENT, NOT_FOUND, ...) are
 * not: the server answered correctly. Follows gRFC A50's split between server and caller faults.
 */
export function isServerFailure(code: status): boolean {
  switch (code) {
    case status.UNKNOWN:
    case status.DEADLINE_EXCEEDED:
    case status.RESOURCE_EXHAUSTED:
    case status.INTERNAL:
    case status.UNAVAILABLE:
    case status.DATA_LOSS:
      return true;
    default:
      return false;
  }
}
