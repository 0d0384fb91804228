"""Certificate files re-read for new TLS handshakes (mesh/tls-certificate-files.ts).

grpcio asks a dynamic server credential's fetcher for a configuration at every new handshake
(``grpc.dynamic_ssl_server_credentials``); :class:`CertificateFileWatcher` answers it, looking at the
files at most every ``refresh_interval_s`` and reading them only when they changed. A client channel
asks the same of its own watcher at every new call (tls_channel.py). A read that
fails, or that finds a key that does not match its certificate (files caught between two renames),
is not passed on: the last good files stay in use and the next look reads them again, as grpc-go's
pemfile provider does.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from .logger import Logger

#: How often certificate files are looked at unless given (s); grpc-go's pemfile provider defaults to 1 h, a mesh rotates sooner.
DEFAULT_CERTIFICATE_REFRESH_S = 60.0


@dataclass(frozen=True)
class TlsFiles:
    """The files of one workload's TLS: the mesh CA bundle, its certificate and its key (PEM).

    ``refresh_interval_s``: how often a server looks at the files for new handshakes, and a client
    channel for new calls (0: at every one).
    ``trust_domain``: the mesh's SPIFFE trust domain, as the TypeScript kit's ``tls.trustDomain``;
    unset, the one the CA certificate's spiffe:// SAN names. A server's authorization matches
    callers given by service name in it (authorization.py).
    """

    ca_file: str
    cert_file: str
    key_file: str
    refresh_interval_s: float = DEFAULT_CERTIFICATE_REFRESH_S
    trust_domain: str | None = None


@dataclass(frozen=True)
class CertificatePems:
    """One good read of a workload's files: the CA bundle, the key and the certificate chain (PEM)."""

    ca: bytes
    key: bytes
    cert: bytes


def read_certificate_files(files: TlsFiles) -> CertificatePems:
    """Reads the three files and checks them with the ssl module: the CA parses, the key matches the certificate.

    Raises OSError or ssl.SSLError saying which check failed.
    """
    with open(files.ca_file, "rb") as ca, open(files.key_file, "rb") as key, open(files.cert_file, "rb") as cert:
        pems = CertificatePems(ca=ca.read(), key=key.read(), cert=cert.read())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pems.ca.decode("ascii", errors="replace"))
    # load_cert_chain reads only files: check the bytes read above, not the files as they are now.
    with tempfile.TemporaryDirectory(prefix="protomesh-tls-") as work:
        key_copy, cert_copy = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
        for path, content in ((key_copy, pems.key), (cert_copy, pems.cert)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as copy:
                copy.write(content)
        context.load_cert_chain(cert_copy, key_copy)
    return pems


def files_signature(files: TlsFiles) -> tuple[tuple[int, int, int], ...]:
    """What changes when any of the three files is replaced: inode (a rename), mtime and size (an in-place write).

    Raises OSError for a file that is not there."""
    stats = (os.stat(path) for path in (files.ca_file, files.cert_file, files.key_file))
    return tuple((stat.st_ino, stat.st_mtime_ns, stat.st_size) for stat in stats)


class CertificateFileWatcher:
    """The fetcher of a dynamic server credential: a new configuration when the files changed and read well, else None.

    Called by grpcio on its own threads at every new handshake (``__call__``), or by a client channel
    at every new call (``changed``); the look at the files is rate-limited to ``refresh_interval_s``.
    ``now`` is injected so tests can pin it.
    """

    def __init__(self, files: TlsFiles, logger: Logger, now: Callable[[], float] = time.monotonic) -> None:
        self._files = files
        self._logger = logger
        self._now = now
        self._lock = threading.Lock()
        self.current = read_certificate_files(files)
        self._signature = files_signature(files)
        self._looked_at = now()

    def look_soon(self) -> None:
        """Makes the next handshake look at the files whatever the refresh interval (a renewal has just written them)."""
        with self._lock:
            self._looked_at = float("-inf")

    def initial_configuration(self) -> grpc.ServerCertificateConfiguration:
        """The configuration of the first read, which the constructor did (and raised on failure)."""
        return _configuration(self.current)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        pems = self.changed()
        return _configuration(pems) if pems is not None else None

    def changed(self) -> CertificatePems | None:
        """The files when they changed since the last good read and read well now (also in ``current``), else None."""
        with self._lock:
            now = self._now()
            if now - self._looked_at < self._files.refresh_interval_s:
                return None
            self._looked_at = now
            try:
                signature = files_signature(self._files)
                if signature == self._signature:
                    return None
                pems = read_certificate_files(self._files)
            except (OSError, ssl.SSLError) as error:
                # Kept: the last good files. The signature is not updated, so the next look reads again.
                self._logger.warn("certificate files not reloaded; the last good ones stay in use", err={"type": type(error).__name__, "message": str(error)})
                return None
            self._signature = signature
            if pems == self.current:
                return None
            self.current = pems
            self._logger.info("certificate files reloaded", certFile=self._files.cert_file)
            return pems


def _configuration(pems: CertificatePems) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(pems.key, pems.cert)], root_certificates=pems.ca)
