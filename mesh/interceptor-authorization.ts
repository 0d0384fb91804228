import { ServerInterceptingCall } from "@grpc/grpc-js";
import type { ServerInterceptor } from "@grpc/grpc-js";
import type { Authorizer } from "./authorization";
import { peerIdentity } from "./tls";

/**
 * Enforces a server's authorization policy (authorization.ts) as each call's metadata arrives: a
 * refused call is answered PERMISSION_DENIED or UNAUTHENTICATED before its handler and the
 * interceptors after this one see it, as the load shedder refuses (observer-server.ts). Placed
 * right after the call observer, which logs and counts the refusal like any call. Calls of the
 * mesh's own services pass through untouched.
 */
export function authorizationInterceptor(authorizer: Authorizer): ServerInterceptor {
  return (methodDescriptor, call) => {
    const method = authorizer.method(methodDescriptor.path);
    if (method.isExempt) return new ServerInterceptingCall(call);
    const intercepting: ServerInterceptingCall = new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const decision = method.check(peerIdentity(call));
            if (decision.outcome === "allow") nextMetadata(metadata);
            else intercepting.sendStatus({ code: decision.code, details: decision.details });
          },
        }),
    });
    return intercepting;
  };
}
