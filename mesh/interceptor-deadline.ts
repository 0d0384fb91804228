import { InterceptingCall } from "@grpc/grpc-js";
import type { Interceptor } from "@grpc/grpc-js";
import { resolveDeadline } from "./deadlines";
import type { DeadlinePolicy } from "./deadlines";

/**
 * Client interceptor that gives every call a deadline: the caller's own, otherwise the policy's for
 * the method. With `parent` set (an inbound call), grpc-js then applies the earlier of this deadline
 * and the parent's remaining budget.
 */
export function deadlineInterceptor(policy: DeadlinePolicy, now: () => number = Date.now): Interceptor {
  return (options, nextCall) => {
    const deadline = resolveDeadline(policy, options.method_definition.path, options.deadline, now);
    return new InterceptingCall(nextCall({ ...options, deadline }));
  };
}
