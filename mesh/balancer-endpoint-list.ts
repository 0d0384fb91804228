import { connectivityState, experimental } from "@grpc/grpc-js";
import type { ChannelOptions, status } from "@grpc/grpc-js";

type ChannelControlHelper = experimental.ChannelControlHelper;
type Endpoint = experimental.Endpoint;
type LeafLoadBalancer = experimental.LeafLoadBalancer;
type LoadBalancer = experimental.LoadBalancer;
type Picker = experimental.Picker;
type TypedLoadBalancingConfig = experimental.TypedLoadBalancingConfig;

/**
 * The channel option a mesh client with metrics sets (client.ts): how a policy built here counts
 * its picks and its endpoints' ejections (metrics.ts balancerMetrics). Kept out of subchannel keys,
 * like the balancer logger (balancer-client-health.ts).
 */
export const BALANCER_METRICS_OPTION = `${experimental.SUBCHANNEL_ARGS_EXCLUDE_KEY_PREFIX}.protomesh.balancer_metrics`;

/** Counters of one policy for one endpoint ("127.0.0.1:50051"). */
export interface BalancerMetrics {
  /** Calls picked onto the endpoint. */
  picks(policy: string, endpoint: string): { inc(): void };
  /** Times outlier detection ejected the endpoint. */
  ejections(policy: string, endpoint: string): { inc(): void };
}

/** One READY endpoint as a picker sees it: its child's picker and the state the policy keeps for it. */
export interface ReadyEndpoint<State> {
  /** The endpoint's pick_first child: picking from it gives the call its subchannel. */
  picker: Picker;
  /** What the policy keeps about the endpoint (its load), created once per endpoint by `newState`. */
  state: State;
}

/** One endpoint of the address list: its child and the policy's state for it, kept across updates. */
interface Entry<State> {
  child: LeafLoadBalancer;
  state: State;
  /** Its addresses as grpc-js names a subchannel's ("127.0.0.1:50051"). */
  addresses: string[];
  /** Its pick counter, bound on its first READY publish with metrics (a label child, not per publish). */
  picks?: { inc(): void };
}

/**
 * Calls in flight on one endpoint, as a picker weighs them: `outstanding` calls started and not
 * ended, plus `picked` calls picked in this turn of the event loop and not started yet. grpc-js
 * starts a picked call only once its call credentials' metadata has resolved (a promise), so the
 * picks of a burst all come before any start: counted from the start alone, every pick of the burst
 * would see the same loads and go to the same endpoint. A pick that never starts (its call was
 * cancelled meanwhile, or grpc-js picked again) is forgotten at the next turn, so nothing leaks.
 */
export interface InFlight {
  outstanding: number;
  picked?: number;
}

/** The calls `load` weighs as in flight. */
export function inFlightOf(load: InFlight): number {
  return load.outstanding + (load.picked ?? 0);
}

/** Loads with picks to forget at the next turn of the event loop. */
const pickedLoads = new Set<InFlight>();

function notePicked(load: InFlight): void {
  load.picked = (load.picked ?? 0) + 1;
  if (pickedLoads.size === 0) {
    setImmediate(() => {
      for (const picked of pickedLoads) picked.picked = 0;
      pickedLoads.clear();
    });
  }
  pickedLoads.add(load);
}

/**
 * `result` counted in `load` from now (see {@link InFlight}), with `started` run when its call
 * starts and `ended` when it ends (with the call's status code), before the child's own callbacks:
 * where a policy measures its calls. A pick that is not COMPLETE is returned as is.
 */
export function trackedPick(
  result: experimental.PickResult,
  load: InFlight,
  started?: () => void,
  ended?: (code: status) => void,
): experimental.PickResult {
  if (result.pickResultType !== experimental.PickResultType.COMPLETE) return result;
  notePicked(load);
  const { onCallStarted, onCallEnded } = result;
  return {
    ...result,
    onCallStarted: () => {
      if ((load.picked ?? 0) > 0) load.picked! -= 1;
      load.outstanding += 1;
      started?.();
      onCallStarted?.();
    },
    onCallEnded: (code, details, metadata) => {
      load.outstanding -= 1;
      ended?.(code);
      onCallEnded?.(code, details, metadata);
    },
  };
}

/** What a policy built on {@link EndpointListBalancer} supplies: its config, its state per endpoint, its picker. */
export interface EndpointPolicy<Config extends TypedLoadBalancingConfig, State> {
  /** The policy's grpc-js name, for errors ("p2c_ewma: no endpoint connected"). */
  typeName: string;
  /** The config class the policy registered; an update with another config is refused. */
  isConfig(config: TypedLoadBalancingConfig): config is Config;
  /** Called once per endpoint, when it joins the address list; kept until it leaves it. */
  newState(config: Config): State;
  /** Called whenever the READY set or the config changes; the picker lives until the next call. */
  pickerFor(ready: ReadyEndpoint<State>[], config: Config): Picker;
}

/**
 * The skeleton that grpc-js's round_robin has and every endpoint-picking policy shares (grpc-go
 * composes it the same way: `endpointsharding` under round_robin): one pick_first child
 * (`LeafLoadBalancer`) per endpoint, kept connected; the channel is READY while any child is, and
 * then the policy's picker chooses among the READY children; CONNECTING while any child connects;
 * TRANSIENT_FAILURE when every child failed. Built only from grpc-js's public `experimental`
 * exports, as grpc-node's test-custom-lb-policies.ts builds its policy.
 *
 * Unlike round_robin, an address-list update keeps the child of every endpoint still listed, and
 * with it the policy's state for that endpoint (its view of the endpoint's load), which survives
 * reconnections too: an xDS update (one replica added) neither drops the others out of READY nor
 * forgets what was learnt about them.
 */
export class EndpointListBalancer<Config extends TypedLoadBalancingConfig, State> implements LoadBalancer {
  /** The address list, by endpoint (grpc-js `endpointToString`), in its order. */
  private entries = new Map<string, Entry<State>>();
  private config: Config | undefined;
  private isUpdating = false;
  private lastError = "";
  private currentState = connectivityState.IDLE;
  private metrics: BalancerMetrics | undefined;

  private readonly childHelper: ChannelControlHelper;

  constructor(
    private readonly helper: ChannelControlHelper,
    private readonly policy: EndpointPolicy<Config, State>,
  ) {
    this.childHelper = experimental.createChildChannelControlHelper(helper, {
      updateState: (_state, _picker, errorMessage) => {
        if (errorMessage) this.lastError = errorMessage;
        this.publish();
      },
      createSubchannel: (address, args) => {
        const subchannel = helper.createSubchannel(address, args);
        if (this.metrics !== undefined) watchEjections(subchannel, this.metrics.ejections(this.policy.typeName, experimental.subchannelAddressToString(address)));
        return subchannel;
      },
    });
  }

  updateAddressList(
    endpoints: experimental.StatusOr<Endpoint[]>,
    config: TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!this.policy.isConfig(config)) return false;
    this.config = config;
    this.metrics = options[BALANCER_METRICS_OPTION] as BalancerMetrics | undefined;
    if (!endpoints.ok) {
      // A resolver error with endpoints in hand keeps using them, as round_robin does.
      if (this.entries.size === 0) this.report(connectivityState.TRANSIENT_FAILURE, endpoints.error.details);
      return true;
    }
    // Children of endpoints still listed are kept (their connection, its health check and their
    // READY state with them): grpc-js's round_robin rebuilds every child on each update, and its
    // channel is CONNECTING until they report READY again, so calls queue whenever any endpoint
    // of the service changes.
    this.isUpdating = true;
    const previous = this.entries;
    this.entries = new Map();
    for (const endpoint of endpoints.value) {
      const key = experimental.endpointToString(endpoint);
      const entry = previous.get(key);
      previous.delete(key);
      if (entry) {
        entry.child.updateEndpoint(endpoint, options);
        this.entries.set(key, entry);
      } else {
        const child = new experimental.LeafLoadBalancer(endpoint, this.childHelper, options, resolutionNote);
        const addresses = endpoint.addresses.map((address) => experimental.subchannelAddressToString(address));
        this.entries.set(key, { child, state: this.policy.newState(config), addresses });
        child.startConnecting();
      }
    }
    for (const { child } of previous.values()) child.destroy();
    this.isUpdating = false;
    if (this.entries.size === 0) {
      this.report(connectivityState.TRANSIENT_FAILURE, `${this.policy.typeName}: no endpoints. Resolution note: ${resolutionNote}`);
      return true;
    }
    this.publish();
    return true;
  }

  /** Recomputes the aggregate state and, when READY, a new picker over the READY children. */
  private publish(): void {
    if (this.isUpdating || !this.config) return;
    const config = this.config;
    const ready: ReadyEndpoint<State>[] = [];
    const counters = this.metrics === undefined ? undefined : new Map<string, { inc(): void }>();
    let isConnecting = false;
    for (const [key, entry] of this.entries) {
      const { child, state: endpointState, addresses } = entry;
      const state = child.getConnectivityState();
      if (state === connectivityState.READY) {
        ready.push({ picker: child.getPicker(), state: endpointState });
        if (counters !== undefined) {
          entry.picks ??= this.metrics!.picks(this.policy.typeName, addresses.length === 1 ? addresses[0] : key);
          for (const address of addresses) counters.set(address, entry.picks);
        }
      } else if (state === connectivityState.CONNECTING) {
        isConnecting = true;
      } else if (state === connectivityState.IDLE) {
        // Like round_robin: every endpoint stays connected, so that a pick never waits for a connection.
        child.exitIdle();
        isConnecting = true;
      }
    }
    if (ready.length > 0) {
      const picker = this.policy.pickerFor(ready, config);
      this.setState(connectivityState.READY, counters === undefined ? picker : countingPicker(picker, counters), null);
    } else if (isConnecting) {
      this.setState(connectivityState.CONNECTING, new experimental.QueuePicker(this), null);
    } else {
      this.report(connectivityState.TRANSIENT_FAILURE, `${this.policy.typeName}: no connection established. Last error: ${this.lastError}`);
    }
  }

  private report(state: connectivityState, details: string): void {
    this.setState(state, new experimental.UnavailablePicker({ details }), details);
  }

  private setState(state: connectivityState, picker: Picker, errorMessage: string | null): void {
    // Leaving READY asks the resolver again, as round_robin does: the endpoint list may be stale.
    if (this.currentState === connectivityState.READY && state !== connectivityState.READY) {
      this.helper.requestReresolution();
    }
    this.currentState = state;
    this.helper.updateState(state, picker, errorMessage);
  }

  exitIdle(): void {
    for (const { child } of this.entries.values()) child.exitIdle();
  }

  resetBackoff(): void {
    // The children's subchannels own the connection backoff; nothing of ours to reset.
  }

  destroy(): void {
    for (const { child } of this.entries.values()) child.destroy();
    this.entries = new Map();
  }

  getTypeName(): string {
    return this.policy.typeName;
  }
}

/** `picker`, counting each complete pick onto the endpoint of its subchannel's address. */
function countingPicker(picker: Picker, counters: ReadonlyMap<string, { inc(): void }>): Picker {
  return {
    pick(args) {
      const result = picker.pick(args);
      if (result.pickResultType === experimental.PickResultType.COMPLETE && result.subchannel !== null) {
        counters.get(result.subchannel.getAddress())?.inc();
      }
      return result;
    },
  };
}

/**
 * Counts each ejection of `subchannel`'s endpoint: its health flag turning false. In grpc-js only
 * outlier_detection sets that flag (`setHealthy`, on the wrapper it gives this policy's children);
 * protomesh's client-side health checks report through the connectivity state instead
 * (health-checked-subchannel.ts). A subchannel made while its endpoint is ejected starts unhealthy
 * and counts from its readmission on.
 */
function watchEjections(subchannel: experimental.SubchannelInterface, ejections: { inc(): void }): void {
  let isHealthy = subchannel.isHealthy();
  subchannel.addHealthStateWatcher((healthy) => {
    if (isHealthy && !healthy) ejections.inc();
    isHealthy = healthy;
  });
}
