"""Keeps a workload's certificate files fresh through the control plane (mesh/certificate-renewal.ts).

Once ``RENEW_AT_FRACTION`` of the certificate's validity has passed, it makes a new EC P-256 key
and a PKCS#10 request for it (``cryptography``), asks the control plane's
protomesh.certificate.v1.CertificateService to sign it over mTLS with the current certificate
(the control plane signs only the caller's own SPIFFE ID), and writes the key, then the
certificate, over the same files, each by rename. The server's file watcher
(tls_certificate_files.py) and the xDS client (xds_bootstrap.py) load them for new handshakes, the
registry lease and the kit's client channels on their next calls (tls_channel.py); open connections keep theirs. A
failure is logged and retried with backoff while the current certificate serves; a control plane
that issues no certificates (UNIMPLEMENTED: it holds no CA key) ends the renewals with one warning.
"""

from __future__ import annotations

import asyncio
import os
import random as _random
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import duration_pb2
from protomesh.certificate.v1 import certificate_pb2, certificate_pb2_grpc

from .backoff import Backoff
from .control_plane_channel import dial_control_plane
from .logger import Logger
from .spiffe_id import spiffe_id_of_certificate
from .tls_certificate_files import TlsFiles

#: The fraction of a certificate's validity after which it is renewed (SPIRE's agent: one half).
RENEW_AT_FRACTION = 1 / 2
#: Deadline of one SignCertificate call: the control plane signs with openssl (s).
SIGN_DEADLINE_S = 10.0
#: Retries of a failed renewal: from half a second up to 30 s (mesh/certificate-renewal.ts).
RETRY_INITIAL_MS = 500
RETRY_MAX_MS = 30_000


def create_certificate_request() -> tuple[bytes, bytes]:
    """A new EC P-256 key (PKCS#8 PEM) and a PKCS#10 request for it (PEM), as mesh/identity.ts makes them.

    The control plane copies neither the subject nor the extensions: what the certificate names is its to decide.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "protomesh")]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key_pem, request.public_bytes(serialization.Encoding.PEM)


def write_key_and_certificate(files: TlsFiles, key_pem: bytes, cert_pem: bytes) -> None:
    """Writes the key, then the certificate, over ``files``, each by rename (mesh/identity.ts writeKeyAndCertificate).

    A watcher sees the old pair, the new key beside the old certificate (which it holds back as no
    pair), or the new pair; never a file half written.
    """
    _replace_file(Path(files.key_file), key_pem, 0o600)
    _replace_file(Path(files.cert_file), cert_pem, 0o644)


def _replace_file(path: Path, content: bytes, mode: int) -> None:
    following = path.with_name(f".{path.name}.{os.getpid()}.next")
    descriptor = os.open(following, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with open(descriptor, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(following, mode)  # whatever the umask made of it
    os.replace(following, path)


class CertificateRenewer:
    """Renews the certificate in ``files`` through the control plane at ``control_plane`` until ``stop()``.

    ``now`` (wall-clock seconds, as certificates count time) and ``random`` (the retries' jitter) are
    injected so tests can pin them; ``on_renewed`` is called with each certificate written.
    """

    def __init__(
        self,
        control_plane: str,
        files: TlsFiles,
        logger: Logger,
        *,
        now: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        on_renewed: Callable[[x509.Certificate], None] | None = None,
    ) -> None:
        self._files = files
        self._logger = logger.child(component="certificate-renewal", certFile=files.cert_file)
        self._now = now
        self._backoff = Backoff(initial_ms=RETRY_INITIAL_MS, max_ms=RETRY_MAX_MS, random=random)
        self._on_renewed = on_renewed
        self._channel = dial_control_plane(control_plane, files, self._logger)
        self._task: asyncio.Task[None] | None = None

    @property
    def is_renewing(self) -> bool:
        """True from ``start`` until ``stop``, or until a control plane without a CA key ended the renewals."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Schedules the first renewal from the certificate on disk (raises when it cannot be read)."""
        delay_s = self._renewal_delay_s(self._current())
        self._task = asyncio.create_task(self._run(delay_s), name=f"certificate-renewal {self._files.cert_file}")

    async def stop(self) -> None:
        """Stops renewing (a renewal under way is abandoned before it writes) and closes the channels."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._channel.close()

    async def renew(self) -> x509.Certificate:
        """Renews now: a new key and certificate written over the files; returns the new certificate."""
        before_pem = Path(self._files.cert_file).read_bytes()
        before = x509.load_pem_x509_certificate(before_pem)
        key_pem, csr_pem = create_certificate_request()
        lifetime = before.not_valid_after_utc - before.not_valid_before_utc
        stub = certificate_pb2_grpc.CertificateServiceStub(self._channel)
        response = await stub.SignCertificate(
            certificate_pb2.SignCertificateRequest(
                csr_pem=csr_pem.decode("ascii"), ttl=duration_pb2.Duration(seconds=int(lifetime.total_seconds()))
            ),
            timeout=SIGN_DEADLINE_S,
        )
        cert_pem = response.certificate_pem.encode("ascii")
        signed_for, ours = spiffe_id_of_certificate(cert_pem), spiffe_id_of_certificate(before_pem)
        if signed_for != ours:
            raise ValueError(f"certificate renewal: the control plane signed {signed_for}, not {ours}")
        renewed = x509.load_pem_x509_certificate(cert_pem)
        write_key_and_certificate(self._files, key_pem, cert_pem)
        self._logger.info(
            "certificate renewed",
            serialNumber=format(renewed.serial_number, "X"),
            notAfter=renewed.not_valid_after_utc.isoformat(),
            spiffeId=response.spiffe_id,
        )
        if self._on_renewed is not None:
            self._on_renewed(renewed)
        return renewed

    async def _run(self, delay_s: float) -> None:
        while True:
            await asyncio.sleep(max(0.0, delay_s))
            try:
                renewed = await self.renew()
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self._logger.warn("the control plane issues no certificates (it holds no CA key): this certificate will not be renewed")
                    return
                delay_s = self._failed(error, {"code": error.code().name, "details": error.details() or ""})
            except Exception as error:  # noqa: BLE001 - unreadable files, a bad answer: retried while the certificate serves
                delay_s = self._failed(error, {})
            else:
                self._backoff.reset()
                delay_s = self._renewal_delay_s(renewed)

    def _failed(self, error: BaseException, status: dict[str, str]) -> float:
        retry_ms = self._backoff.next_ms()
        self._logger.error(
            "certificate renewal failed; the current certificate serves until it expires",
            err={"type": type(error).__name__, "message": str(error)},
            retryMs=retry_ms,
            **status,
        )
        return retry_ms / 1000

    def _renewal_delay_s(self, certificate: x509.Certificate) -> float:
        """How long until ``certificate`` is due: RENEW_AT_FRACTION of its validity after its start."""
        start = certificate.not_valid_before_utc.timestamp()
        end = certificate.not_valid_after_utc.timestamp()
        return start + (end - start) * RENEW_AT_FRACTION - self._now()

    def _current(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(Path(self._files.cert_file).read_bytes())
