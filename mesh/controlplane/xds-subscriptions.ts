import { CLUSTER_TYPE_URL, LISTENER_TYPE_URL } from "./xds-protos";

/**
 * The types whose empty subscription means "every resource of the type" (a wildcard): LDS and CDS
 * in the xDS protocol (state of the world). An empty RDS or EDS subscription asks for nothing.
 */
export const WILDCARD_TYPE_URLS: readonly string[] = [LISTENER_TYPE_URL, CLUSTER_TYPE_URL];

/** True when `names` of `typeUrl` is a wildcard subscription (see {@link WILDCARD_TYPE_URLS}). */
export function isWildcard(typeUrl: string, names: readonly string[]): boolean {
  return names.length === 0 && WILDCARD_TYPE_URLS.includes(typeUrl);
}

const NONE: ReadonlySet<never> = new Set();

/**
 * Which streams subscribed to which resources, per type: by name, and the wildcard subscribers
 * apart. The xDS server keeps it as requests change subscriptions, so that a change of one
 * resource visits the streams that asked for it, not every stream of the mesh.
 */
export class SubscriptionIndex<Stream> {
  /** typeUrl → name → streams subscribed to that name. */
  private readonly byName = new Map<string, Map<string, Set<Stream>>>();
  /** typeUrl → streams with a wildcard subscription of that type. */
  private readonly wildcards = new Map<string, Set<Stream>>();

  /** Moves `stream`'s subscription of `typeUrl` from the names `previous` to `next`. */
  subscribe(stream: Stream, typeUrl: string, previous: readonly string[], next: readonly string[]): void {
    this.unsubscribe(stream, typeUrl, previous);
    if (isWildcard(typeUrl, next)) {
      setIn(this.wildcards, typeUrl).add(stream);
      return;
    }
    const names = mapIn(this.byName, typeUrl);
    for (const name of next) setIn(names, name).add(stream);
  }

  /** Forgets `stream`'s subscription of `typeUrl` to `names` (the stream closed, or changed it). */
  unsubscribe(stream: Stream, typeUrl: string, names: readonly string[]): void {
    if (isWildcard(typeUrl, names)) {
      deleteIn(this.wildcards, typeUrl, stream);
      return;
    }
    const byName = this.byName.get(typeUrl);
    if (!byName) return;
    for (const name of names) deleteIn(byName, name, stream);
  }

  /** The streams subscribed to resource `name` of `typeUrl` by name (wildcards apart). */
  streamsOf(typeUrl: string, name: string): ReadonlySet<Stream> {
    return this.byName.get(typeUrl)?.get(name) ?? NONE;
  }

  /** The streams with a wildcard subscription of `typeUrl`. */
  wildcardStreamsOf(typeUrl: string): ReadonlySet<Stream> {
    return this.wildcards.get(typeUrl) ?? NONE;
  }
}

function mapIn<V>(map: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = map.get(key);
  if (!inner) map.set(key, (inner = new Map()));
  return inner;
}

function setIn<V>(map: Map<string, Set<V>>, key: string): Set<V> {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  return set;
}

/** Removes `value` from the set at `key`, and the set once it is empty (no growth with churn). */
function deleteIn<V>(map: Map<string, Set<V>>, key: string, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}
