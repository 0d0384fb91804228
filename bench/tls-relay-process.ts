import * as net from "node:net";
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import { BENCH_TLS_SERVER_SERVICE, checkBenchServerIdentity, readPem, tlsFilesFromFlags } from "./bench-tls";
import { serveControl } from "./control-channel";

/**
 * Entry point of B1T's TLS relay (`--ca --cert --key`, the client side of the bench TLS): h2load
 * presents no client certificate (nghttp2/nghttp2#1479), and a STRICT mTLS server refuses a client
 * without one, so h2load speaks h2c to a relay port here and the relay carries each connection's
 * bytes to the server over its own TLS connection, presenting the bench client's certificate
 * (ALPN h2, the server checked against the CA and its SPIFFE ID). One TLS connection per h2load
 * connection, opened when h2load connects: the server sees the same connections, frames and
 * handshakes as from a client with the certificate. `open` with `isTls: false` relays plain TCP
 * instead, so that plaintext servers are measured through the same hop. The relay touches bytes,
 * not frames: its cost is per chunk and in OpenSSL, a fraction of h2load's own on the load core.
 */

/** What the harness sends with `open`: the server's port on 127.0.0.1, and whether it speaks mTLS. */
export interface RelayRoute {
  port: number;
  isTls: boolean;
}

const HOST = "127.0.0.1";

/** Opens a connection to the server, with Nagle's algorithm off as h2load's and grpc-js' clients have it. */
function connectUpstream(route: RelayRoute, secure: tls.ConnectionOptions): net.Socket {
  const address = { host: HOST, port: route.port };
  const socket = route.isTls ? tls.connect({ ...address, ...secure, ALPNProtocols: ["h2"] }) : net.connect(address);
  socket.setNoDelay(true);
  return socket;
}

/** Listens on a free port and relays every connection to `route`; resolves to the port. */
function open(route: RelayRoute, secure: tls.ConnectionOptions, listeners: net.Server[]): Promise<number> {
  const listener = net.createServer({ noDelay: true }, (inbound) => {
    const upstream = connectUpstream(route, secure);
    // Either side's end or error ends both: h2load sees the server's refusal as a failed connection.
    const close = () => {
      inbound.destroy();
      upstream.destroy();
    };
    inbound.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    inbound.pipe(upstream);
    upstream.pipe(inbound);
  });
  listeners.push(listener);
  return new Promise((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(0, HOST, () => resolve((listener.address() as AddressInfo).port));
  });
}

function main(): void {
  const [ca, cert, key] = readPem(tlsFilesFromFlags());
  const secure: tls.ConnectionOptions = {
    ca,
    cert,
    key,
    servername: BENCH_TLS_SERVER_SERVICE,
    checkServerIdentity: checkBenchServerIdentity,
  };
  const listeners: net.Server[] = [];
  serveControl(
    {
      open: (args) => open(args as RelayRoute, secure, listeners),
      stop: () => {
        for (const listener of listeners) listener.close();
        setImmediate(() => process.exit(0));
      },
    },
    {},
  );
}

main();
