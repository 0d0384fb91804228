"""The Python interop program (proto/protomesh/interop/v1/interop.proto), built on protomesh_kit.

``interop.py serve``: serves InteropService through the kit (registers as INTEROP_SERVICE, default
"interop-python"; health, reflection, per-call logs, drain on SIGTERM). With PROTOMESH_TLS_* its
port is STRICT mTLS, and registration, xDS and relays are mTLS too; PROTOMESH_MESH_CONFIG's
services.<INTEROP_SERVICE>.authorization, if any, authorizes its callers.

``interop.py call --target <name> --method </full.Service/Method> --request '<proto3 JSON>'
[--deadline-ms N] [--cancel-after-ms N] [--metadata key=value]... [--request-id ID] [--count N]
[--unknown-field]``: dials the target by name through the kit's client and prints one JSON line per
call on stdout (the kit's own log lines go to stderr); with PROTOMESH_TLS_*, over mTLS to a target
that must be a mesh service name. The method may be any method of any service
in the generated stubs: every generated _pb2 module is imported into the default descriptor pool.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import os
import sys
import time
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.unknown_fields import UnknownFieldSet
from protomesh.interop.v1 import interop_pb2, interop_pb2_grpc
from protomesh_kit import (
    REQUEST_ID_KEY,
    Logger,
    MeshError,
    SettingsError,
    TlsFiles,
    create_server,
    current_request_id,
    dial,
    drain_on_signals,
    is_service_name,
    load_settings,
)

LANGUAGE = "python"
INTEROP_SERVICE_ENV = "INTEROP_SERVICE"
METADATA_PREFIX = "x-interop-"
#: The unknown field --unknown-field appends to the Payload: number 100, length-delimited.
UNKNOWN_FIELD_NUMBER = 100
UNKNOWN_FIELD_VALUE = f"from-{LANGUAGE}".encode()


class UsageError(Exception):
    """A command-line mistake; the message names the flag."""


# --- serve -----------------------------------------------------------------------------------


class InteropService(interop_pb2_grpc.InteropServiceServicer):
    """Echo and Hold as the proto's comments say."""

    def __init__(self, endpoint: str, control_plane: str | None, zone: str, logger: Logger, tls: TlsFiles | None = None) -> None:
        self.endpoint = endpoint
        self._control_plane = control_plane
        self._tls = tls
        self._zone = zone
        self._logger = logger
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def Echo(self, request: interop_pb2.EchoRequest, context: grpc.aio.ServicerContext) -> interop_pb2.EchoResponse:
        received = [(key, value) for key, value in context.invocation_metadata() or () if key.startswith(METADATA_PREFIX)]
        received.sort(key=lambda entry: entry[0])  # stable: entries of one key stay in order received
        entries = [
            interop_pb2.MetadataEntry(key=key, binary=value)
            if isinstance(value, bytes)
            else interop_pb2.MetadataEntry(key=key, text=value)
            for key, value in received
        ]
        context.set_trailing_metadata(tuple(received) + tuple(context.trailing_metadata() or ()))
        return interop_pb2.EchoResponse(payload=request.payload, metadata=entries, language=LANGUAGE, endpoint=self.endpoint)

    async def Hold(self, request: interop_pb2.HoldRequest, context: grpc.aio.ServicerContext) -> interop_pb2.HoldResponse:
        remaining = context.time_remaining()
        hop = interop_pb2.Hop(
            language=LANGUAGE,
            endpoint=self.endpoint,
            remaining_ms=-1 if remaining is None else int(remaining * 1000),
            request_id=current_request_id() or "",
        )
        if request.relay_to:
            service = request.relay_to[0]
            stub = interop_pb2_grpc.InteropServiceStub(self._channel(service))
            try:
                downstream = await stub.Hold(interop_pb2.HoldRequest(hold_ms=request.hold_ms, relay_to=request.relay_to[1:]))
            except grpc.aio.AioRpcError as error:
                raise MeshError.from_rpc_error(error, prefix=f"{service}: ") from None
            return interop_pb2.HoldResponse(hops=[hop, *downstream.hops])
        started = time.monotonic()
        hold_s = request.hold_ms / 1000
        try:
            if remaining is not None and remaining < hold_s:
                await asyncio.sleep(max(0.0, remaining))
                self._hold_ended(started, "deadline")
                raise MeshError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed while holding")
            await asyncio.sleep(hold_s)
        except asyncio.CancelledError:
            remaining_now = context.time_remaining()
            self._hold_ended(started, "deadline" if remaining_now is not None and remaining_now <= 0 else "cancelled")
            raise
        self._hold_ended(started, "done")
        return interop_pb2.HoldResponse(hops=[hop])

    def _hold_ended(self, started: float, reason: str) -> None:
        self._logger.info("hold ended", heldMs=round((time.monotonic() - started) * 1000), reason=reason)

    def _channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            # Relays go over mTLS when this server is on it, to the service they name.
            self._channels[service] = dial(service, control_plane=self._control_plane, zone=self._zone, logger=self._logger, tls=self._tls)
        return self._channels[service]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


async def serve() -> int:
    settings = load_settings()
    name = os.environ.get(INTEROP_SERVICE_ENV) or f"interop-{LANGUAGE}"
    logger = Logger(name=name, level=settings.log_level)
    try:
        # With mTLS, services.<name>.authorization of PROTOMESH_MESH_CONFIG, when the file has one.
        authorization = settings.authorization_of(name)
    except (MeshError, OSError) as error:
        print(f"interop.py: {settings.mesh_config_path}: {error}", file=sys.stderr)
        return 1
    server = create_server(
        name,
        logger=logger,
        control_plane=settings.control_plane,
        zone=settings.zone,
        advertise_host=settings.advertise_host,
        tls=settings.tls,
        authorization=authorization,
    )
    service = InteropService("", settings.control_plane, settings.zone, logger, settings.tls)
    server.add_service(interop_pb2_grpc.add_InteropServiceServicer_to_server, service)
    exit_code = drain_on_signals(server.drain, logger)
    address = settings.listen_address(0)
    # The endpoint as registered: the advertised host, else the bound one; known once bound.
    host = settings.advertise_host or settings.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    service.endpoint = f"[{host}]:?" if ":" in host else f"{host}:?"
    port = await server.listen(address)
    service.endpoint = service.endpoint.replace("?", str(port))
    code = await exit_code
    await service.close()
    return code


# --- call ------------------------------------------------------------------------------------


def import_generated() -> None:
    """Imports every generated _pb2 module, so the default pool knows every message and service."""
    # The generated packages are namespace packages (no __init__.py), which pkgutil does not walk.
    for package_name in ("shop", "protomesh"):
        package = importlib.import_module(package_name)
        for root in package.__path__:
            for folder, _, files in os.walk(root):
                relative = os.path.relpath(folder, root)
                prefix = package_name if relative == "." else f"{package_name}.{relative.replace(os.sep, '.')}"
                for file in sorted(files):
                    if file.endswith("_pb2.py"):
                        importlib.import_module(f"{prefix}.{file[:-3]}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="interop.py call", description="Calls a method by name through the mesh.")
    parser.add_argument("--target", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--request", required=True)
    parser.add_argument("--deadline-ms", type=int)
    parser.add_argument("--cancel-after-ms", type=int)
    parser.add_argument("--metadata", action="append", default=[])
    parser.add_argument("--request-id")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--unknown-field", action="store_true")
    args = parser.parse_args(argv)
    if args.deadline_ms is not None and args.deadline_ms <= 0:
        raise UsageError(f"--deadline-ms: must be a positive integer, got {args.deadline_ms}")
    if args.cancel_after_ms is not None and args.cancel_after_ms < 0:
        raise UsageError(f"--cancel-after-ms: must be an integer >= 0, got {args.cancel_after_ms}")
    if args.count < 1:
        raise UsageError(f"--count: must be an integer >= 1, got {args.count}")
    metadata: list[tuple[str, Any]] = []
    for entry in args.metadata:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata: must be key=value, got {entry!r}")
        key = key.lower()
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value, validate=True)))
            except ValueError:
                raise UsageError(f"--metadata: the value of {key} must be base64") from None
        else:
            metadata.append((key, value))
    if args.request_id is not None:
        metadata.append((REQUEST_ID_KEY, args.request_id))
    args.metadata = metadata
    path = args.method
    if not path.startswith("/") or path.count("/") != 2:
        raise UsageError(f"--method: must be /<package.Service>/<Method>, got {path!r}")
    service, method = path[1:].split("/")
    try:
        args.descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        raise UsageError(f"--method: {path} is not a method of the generated stubs") from None
    input_class = message_factory.GetMessageClass(args.descriptor.input_type)
    try:
        args.message = json_format.Parse(args.request, input_class())
    except json_format.ParseError as error:
        raise UsageError(f"--request: not a {args.descriptor.input_type.full_name} in proto3 JSON: {error}") from None
    if args.unknown_field and args.descriptor.input_type.full_name != "protomesh.interop.v1.EchoRequest":
        raise UsageError("--unknown-field: only for protomesh.interop.v1.InteropService/Echo")
    return args


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_with_unknown_field(request: Any) -> bytes:
    """The EchoRequest with field 100 (length-delimited, "from-python") appended to its Payload."""
    payload = request.payload.SerializeToString() + _varint(UNKNOWN_FIELD_NUMBER << 3 | 2)
    payload += _varint(len(UNKNOWN_FIELD_VALUE)) + UNKNOWN_FIELD_VALUE
    rest = request.__class__()
    rest.CopyFrom(request)
    rest.ClearField("payload")
    return rest.SerializeToString() + _varint(1 << 3 | 2) + _varint(len(payload)) + payload


def keeps_unknown_field(response: Any) -> bool:
    """Whether the response's payload carries exactly the unknown field that was sent."""
    fields = list(UnknownFieldSet(response.payload))
    return (
        len(fields) == 1
        and fields[0].field_number == UNKNOWN_FIELD_NUMBER
        and fields[0].wire_type == 2
        and fields[0].data == UNKNOWN_FIELD_VALUE
    )


def entries(metadata: Any) -> list[dict[str, str]]:
    """The x-interop-* and x-request-id entries, as the contract prints them."""
    out = []
    for key, value in metadata or ():
        if not (key.startswith(METADATA_PREFIX) or key == REQUEST_ID_KEY):
            continue
        if key.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode()
            out.append({"key": key, "binary": base64.b64encode(raw).decode()})
        else:
            out.append({"key": key, "text": value})
    return out


async def call(args: argparse.Namespace) -> int:
    settings = load_settings()
    logger = Logger(name="interop-call", level=settings.log_level, stream=sys.stderr)
    if settings.tls is not None and not is_service_name(args.target):
        raise UsageError(f"--target {args.target}: with PROTOMESH_TLS_* the target must be a mesh service name, whose certificate is checked")
    channel = dial(args.target, control_plane=settings.control_plane, zone=settings.zone, logger=logger, tls=settings.tls)
    output_class = message_factory.GetMessageClass(args.descriptor.output_type)
    if args.unknown_field:
        body = encode_with_unknown_field(args.message)
        serializer: Any = lambda _message: body  # noqa: E731
    else:
        serializer = lambda message: message.SerializeToString()  # noqa: E731
    method = channel.unary_unary(args.method, request_serializer=serializer, response_deserializer=output_class.FromString)
    try:
        for _ in range(args.count):
            print(json.dumps(await one_call(method, args)), flush=True)
    finally:
        await channel.close()
    return 0


async def one_call(method: Any, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    timeout = None if args.deadline_ms is None else args.deadline_ms / 1000
    rpc = method(args.message, timeout=timeout, metadata=tuple(args.metadata))
    canceller = None
    if args.cancel_after_ms is not None:
        canceller = asyncio.get_running_loop().call_later(args.cancel_after_ms / 1000, rpc.cancel)
    response = None
    try:
        response = await rpc
    except grpc.aio.AioRpcError:
        pass
    except asyncio.CancelledError:
        pass  # the call was cancelled (--cancel-after-ms): its status says so
    finally:
        if canceller is not None:
            canceller.cancel()
    code = await rpc.code()
    line: dict[str, Any] = {
        "code": code.value[0],
        "codeName": code.name,
        "details": (await rpc.details()) or "",
        "response": None if response is None else json_format.MessageToDict(response),
        "headers": entries(await rpc.initial_metadata()),
        "trailers": entries(await rpc.trailing_metadata()),
        "elapsedMs": round((time.perf_counter() - started) * 1000, 3),
    }
    if args.unknown_field:
        line["unknownFieldKept"] = response is not None and keeps_unknown_field(response)
    return line


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("serve", "call"):
        print("usage: interop.py serve | interop.py call --target NAME --method /pkg.Service/Method --request JSON ...", file=sys.stderr)
        return 2
    try:
        if argv[0] == "serve":
            if len(argv) > 1:
                raise UsageError(f"{argv[1]}: serve takes no arguments (settings come from the environment)")
            return asyncio.run(serve())
        import_generated()
        return asyncio.run(call(parse_args(argv[1:])))
    except UsageError as error:
        print(f"interop.py: {error}", file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"interop.py: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
