import { readFileSync } from "node:fs";
import * as tls from "node:tls";

/** The files a probe presents: the mesh CA to trust, and a workload's certificate and key. */
export interface ProbeFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/**
 * Opens a fresh TLS connection (ALPN h2, as grpc-js) to 127.0.0.1:`port`, and resolves with the
 * serial number of the certificate the server presented, lowercase hex without leading zeros.
 * Host names are not checked: mesh endpoints are addresses.
 */
export function serverCertificateSerial(port: number, files: ProbeFiles, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      ca: readFileSync(files.caFile),
      cert: readFileSync(files.certFile),
      key: readFileSync(files.keyFile),
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
    });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no TLS handshake with port ${port} within ${timeoutMs} ms`)));
    socket.once("secureConnect", () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.destroy();
      resolve(normalSerial(serial));
    });
    socket.once("error", reject);
  });
}

/** A certificate serial as lowercase hex without leading zeros, so that node's two spellings compare. */
export function normalSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, "");
}
