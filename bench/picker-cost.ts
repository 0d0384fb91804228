import { Metadata, connectivityState, experimental, status } from "@grpc/grpc-js";
import type { ChannelOptions } from "@grpc/grpc-js";
import { register } from "../mesh/register";

/**
 * The per-pick cost of a load-balancing policy's picker, in µs: the real policy (grpc-js's own or
 * protomesh's, built by name from grpc-js's registry) over `endpoints` READY endpoints, each a
 * stand-in subchannel that is READY at once, picked `picks` times in a tight loop, each pick's
 * call started and ended as grpc-js would (that is where p2c_ewma and least_request count).
 * ring_hash is left out: its pick needs the hash an xDS route puts on the call.
 */
export function microsecondsPerPick(policy: string, picks: number, endpoints = 5): number {
  register();
  let readyPicker: experimental.Picker | undefined;
  const helper: experimental.ChannelControlHelper = {
    createSubchannel: (address) => readySubchannel(experimental.subchannelAddressToString(address)),
    updateState: (state, picker) => {
      if (state === connectivityState.READY) readyPicker = picker;
    },
    requestReresolution: () => undefined,
    addChannelzChild: () => undefined,
    removeChannelzChild: () => undefined,
  };
  const balancer = new experimental.ChildLoadBalancerHandler(helper);
  const list = Array.from({ length: endpoints }, (_, index) => ({ addresses: [{ host: "127.0.0.1", port: 10_000 + index }] }));
  const options: ChannelOptions = {};
  balancer.updateAddressList(experimental.statusOrFromValue(list), experimental.parseLoadBalancingConfig({ [policy]: {} }), options, "");
  if (!readyPicker) throw new Error(`picker cost: ${policy} did not become READY over stand-in subchannels`);
  const args = { metadata: new Metadata(), extraPickInfo: {} };
  const trailers = new Metadata();
  const pickOnce = () => {
    const result = readyPicker!.pick(args);
    result.onCallStarted?.();
    result.onCallEnded?.(status.OK, "", trailers);
  };
  for (let index = 0; index < Math.min(picks, 10_000); index += 1) pickOnce(); // warm up
  const startedAt = process.hrtime.bigint();
  for (let index = 0; index < picks; index += 1) pickOnce();
  const elapsedNs = Number(process.hrtime.bigint() - startedAt);
  balancer.destroy();
  return elapsedNs / picks / 1000;
}

/** A subchannel stand-in that is READY from the start and never changes: enough for a picker. */
function readySubchannel(address: string): experimental.SubchannelInterface {
  const stub: Record<string, unknown> = {
    getConnectivityState: () => connectivityState.READY,
    addConnectivityStateListener: () => undefined,
    removeConnectivityStateListener: () => undefined,
    startConnecting: () => undefined,
    getAddress: () => address,
    throttleKeepalive: () => undefined,
    ref: () => undefined,
    unref: () => undefined,
    getChannelzRef: () => ({ kind: "subchannel", id: 0, name: address }),
    isHealthy: () => true,
    addHealthStateWatcher: () => undefined,
    removeHealthStateWatcher: () => undefined,
    addDataWatcher: () => undefined,
    realSubchannelEquals: (other: experimental.SubchannelInterface): boolean => (other.getRealSubchannel() as unknown) === stub,
    getRealSubchannel: () => stub,
  };
  return stub as unknown as experimental.SubchannelInterface;
}
