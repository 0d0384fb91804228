"""Per-method authorization of a server's callers by their SPIFFE ID (mesh/authorization.ts, issue 13).

The semantics of gRPC's own authorization policy (gRFC A43) and Istio's AuthorizationPolicy, the
same in every kit: a deny rule that matches wins over any allow rule; once a policy exists, a call
no allow rule matches is refused (default deny) PERMISSION_DENIED; a call without a peer identity
is refused UNAUTHENTICATED. The mesh's own services (health, reflection, ORCA: observer.MESH_SERVICES)
are never authorized, so probes and load reports keep working. Matching is on the registered
method path: grpcio looks the handler up by the exact ``:path`` before any interceptor decides, so
another spelling of a path never reaches a handler (UNIMPLEMENTED) and cannot slip past a rule.
test/fixtures/authorization-cases.yaml holds the cases every kit decides alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import grpc
import yaml

from .errors import invalid_argument
from .names import is_service_name
from .observer import MESH_SERVICES
from .spiffe_id import TRUST_DOMAIN_PATTERN, spiffe_id_for, trust_domain_of

#: What a rule does to the calls it matches.
AuthorizationAction = Literal["allow", "deny"]

#: "*", "/pkg.Service/*", "/pkg.Service/Method" or "Method" (the method keys of the mesh config, plus wildcards).
_METHOD_PATTERN = re.compile(r"\*|/[A-Za-z_][A-Za-z0-9_.]*/\*|(/[A-Za-z_][A-Za-z0-9_.]*/)?[A-Za-z_][A-Za-z0-9_]*")
#: A SPIFFE ID (SPIFFE ID spec, 2.1 and 2.2): spiffe://<trust domain>/<segment>[/<segment>...].
_SPIFFE_ID_PATTERN = re.compile(r"spiffe://[^/]+(/[A-Za-z0-9._-]+)+")
#: The service name of a mesh workload's SPIFFE ID.
_SERVICE_OF_SPIFFE_ID = re.compile(r"spiffe://[^/]+/service/([^/]+)")
#: A gRPC method path's service and method; any other shape is all service, no method (mesh/method-path.ts).
_METHOD_PATH = re.compile(r"/([^/]+)/([^/]+)")


@dataclass(frozen=True)
class AuthorizationRule:
    """One rule of a policy: ``action`` for calls of any of ``methods`` by any of ``callers``.

    ``callers``: "*" (any caller with a mesh identity), a mesh service name ("orders": its SPIFFE ID
    ``spiffe://<trust domain>/service/orders``), or a full SPIFFE ID. ``methods``: "*" (every method
    of the server's application services), "/pkg.Service/*" (every method of one), a full path
    ("/pkg.Service/Method"), or a method name ("Method", of any of them).
    """

    action: AuthorizationAction
    callers: tuple[str, ...]
    methods: tuple[str, ...]


@dataclass(frozen=True)
class AuthorizationPolicy:
    """A validated ``authorization`` block: its rules, in the order written."""

    rules: tuple[AuthorizationRule, ...]


@dataclass(frozen=True)
class AuthorizationDecision:
    """The outcome of authorizing one call; a refusal carries the status and details the caller gets."""

    outcome: Literal["allow", "deny", "unauthenticated"]
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""


ALLOWED = AuthorizationDecision("allow")


def parse_authorization_policy(block: object, field: str) -> AuthorizationPolicy:
    """Validates an ``authorization`` block (plain YAML or JSON, as parsed) into a policy.

    Anything wrong is refused with a MeshError INVALID_ARGUMENT naming the field under ``field``,
    e.g. ``services.catalog.authorization.rules[0].action: must be allow or deny``. An empty
    ``rules`` list is a policy that refuses every call of the application's methods.
    """
    node = _object_at(block, field)
    _known_keys(node, field, ("rules",))
    rules = node.get("rules")
    if not isinstance(rules, list):
        raise invalid_argument(f"{field}.rules", "must be a list of rules ({ action, callers, methods })")
    return AuthorizationPolicy(tuple(_parse_rule(rule, f"{field}.rules[{index}]") for index, rule in enumerate(rules)))


def _parse_rule(value: object, field: str) -> AuthorizationRule:
    node = _object_at(value, field)
    _known_keys(node, field, ("action", "callers", "methods"))
    action = node.get("action")
    if action != "allow" and action != "deny":
        raise invalid_argument(f"{field}.action", "must be allow or deny")
    callers = _non_empty_strings(node.get("callers"), f"{field}.callers", 'mesh service names (orders), SPIFFE IDs or "*"')
    for index, caller in enumerate(callers):
        if caller != "*" and not is_service_name(caller) and not _is_spiffe_id(caller):
            raise invalid_argument(
                f"{field}.callers[{index}]",
                f'must be a mesh service name (orders), a SPIFFE ID (spiffe://protomesh.local/service/orders) or "*", got {_quoted(caller)}',
            )
    methods = _non_empty_strings(node.get("methods"), f"{field}.methods", 'method names (GetProduct), full paths or "*"')
    for index, method in enumerate(methods):
        method_field = f"{field}.methods[{index}]"
        if _METHOD_PATTERN.fullmatch(method) is None:
            raise invalid_argument(
                method_field,
                "must be a method name (GetProduct), a full path (/shop.catalog.v1.CatalogService/GetProduct), "
                f'/<service>/* or "*", got {_quoted(method)}',
            )
        if method.startswith("/") and method[1 : method.rindex("/")] in MESH_SERVICES:
            raise invalid_argument(method_field, "names a mesh service (health, reflection, ORCA), whose calls are never authorized")
    return AuthorizationRule(action, callers, methods)


def _object_at(value: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise invalid_argument(field, "must be a mapping")
    return value


def _known_keys(node: Mapping[Any, Any], field: str, keys: tuple[str, ...]) -> None:
    # A typo must never pass as a default (mesh/config-fields.ts knownKeys).
    for key in node:
        if key not in keys:
            raise invalid_argument(f"{field}.{key}" if field else str(key), f"unknown field (expected one of {', '.join(keys)})")


def _non_empty_strings(value: object, field: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise invalid_argument(field, f"must be a non-empty list of {what}")
    return tuple(value)


def _is_spiffe_id(value: str) -> bool:
    trust_domain = trust_domain_of(value)
    return (
        _SPIFFE_ID_PATTERN.fullmatch(value) is not None
        and trust_domain is not None
        and TRUST_DOMAIN_PATTERN.fullmatch(trust_domain) is not None
    )


def _quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # as JSON.stringify quotes it in the TypeScript kit's errors


@dataclass(frozen=True)
class _Callers:
    """The callers rules name, compiled for set lookups per call."""

    is_any: bool
    spiffe_ids: frozenset[str]
    #: Service names to match in any trust domain; empty when the server's trust domain is known.
    service_names: frozenset[str]

    def __contains__(self, spiffe_id: str) -> bool:
        if self.is_any or spiffe_id in self.spiffe_ids:
            return True
        if not self.service_names:
            return False
        match = _SERVICE_OF_SPIFFE_ID.fullmatch(spiffe_id)
        return match is not None and match.group(1) in self.service_names


class MethodAuthorization:
    """How the calls of one method are authorized: the policy's rules for it, compiled."""

    def __init__(self, path: str, is_exempt: bool, denies: tuple[tuple[int, _Callers], ...] = (), allows: _Callers | None = None) -> None:
        self.path = path
        #: The method is a mesh service's (health, reflection, ORCA): every call is allowed.
        self.is_exempt = is_exempt
        self._denies = denies
        self._allows = allows

    def check(self, spiffe_id: str | None) -> AuthorizationDecision:
        """Decides a call of this method by the caller's SPIFFE ID (None: no peer identity)."""
        if self.is_exempt:
            return ALLOWED
        if spiffe_id is None:
            return AuthorizationDecision(
                "unauthenticated",
                grpc.StatusCode.UNAUTHENTICATED,
                f"{self.path} needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID",
            )
        for index, callers in self._denies:
            if spiffe_id in callers:
                return self._refusal(spiffe_id, f"denied by rules[{index}]")
        if self._allows is not None and spiffe_id in self._allows:
            return ALLOWED
        return self._refusal(spiffe_id, "no rule allows it")

    def _refusal(self, spiffe_id: str, why: str) -> AuthorizationDecision:
        return AuthorizationDecision("deny", grpc.StatusCode.PERMISSION_DENIED, f"{spiffe_id} may not call {self.path} ({why})")


class Authorizer:
    """A policy compiled per method path, on the method's first call, for one server.

    A call costs a dict lookup and a few set lookups. The paths are the server's registered ones
    only (an unknown one is answered UNIMPLEMENTED before the authorization interceptor), so the
    dict stays as small as the services. ``trust_domain`` is the server's: a caller given as a
    service name matches only ``spiffe://<trust_domain>/service/<name>``; without one, that name in
    any trust domain.
    """

    def __init__(self, policy: AuthorizationPolicy, trust_domain: str | None = None) -> None:
        self.policy = policy
        self.trust_domain = trust_domain
        self._methods: dict[str, MethodAuthorization] = {}

    def method(self, path: str) -> MethodAuthorization:
        """How calls to ``path`` are authorized; the same object for every call of the method."""
        compiled = self._methods.get(path)
        if compiled is None:
            compiled = self._methods[path] = self._compile(path)
        return compiled

    def _compile(self, path: str) -> MethodAuthorization:
        match = _METHOD_PATH.fullmatch(path)
        service, method = (match.group(1), match.group(2)) if match else (path, "")
        if service in MESH_SERVICES:
            return MethodAuthorization(path, is_exempt=True)
        denies: list[tuple[int, _Callers]] = []
        allowed: list[str] = []
        for index, rule in enumerate(self.policy.rules):
            if not any(_method_matches(pattern, path, service, method) for pattern in rule.methods):
                continue
            if rule.action == "deny":
                denies.append((index, self._callers(rule.callers)))
            else:
                allowed.extend(rule.callers)
        return MethodAuthorization(path, False, tuple(denies), self._callers(allowed))

    def _callers(self, callers: Iterable[str]) -> _Callers:
        spiffe_ids: set[str] = set()
        service_names: set[str] = set()
        for caller in callers:
            if caller == "*" or caller.startswith("spiffe://"):
                spiffe_ids.add(caller)
            elif self.trust_domain is not None:
                spiffe_ids.add(spiffe_id_for(self.trust_domain, caller))
            else:
                service_names.add(caller)
        return _Callers("*" in spiffe_ids, frozenset(spiffe_ids), frozenset(service_names))


def _method_matches(pattern: str, path: str, service: str, method: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("/*"):
        return pattern[1:-2] == service
    return pattern == path if pattern.startswith("/") else pattern == method


def authorize(policy: AuthorizationPolicy, path: str, spiffe_id: str | None, trust_domain: str | None = None) -> AuthorizationDecision:
    """Decides one call of ``path`` by ``spiffe_id`` (None: no peer identity) under ``policy``.

    Servers use an :class:`Authorizer`, which compiles the policy once per method.
    """
    return Authorizer(policy, trust_domain).method(path).check(spiffe_id)


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans (true and false only), as the TypeScript kit's
    ``yaml`` package reads the file: YAML 1.1 would make a service named ``on`` or ``no`` a boolean."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_mesh_config(text: str) -> object:
    """The mesh config document in ``text``, parsed; not valid YAML is INVALID_ARGUMENT ``(file): not valid YAML: ...``."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise invalid_argument("(file)", f"not valid YAML: {str(error).splitlines()[0]}") from error


def load_authorization_policy(file: str, service: str) -> AuthorizationPolicy | None:
    """A service's own policy from the mesh config file: ``services.<service>.authorization``, validated.

    None when the file gives none. For a program's edge (PROTOMESH_MESH_CONFIG); it reads no other
    block (the control plane validates the whole file when it loads it). An unreadable file raises OSError.
    """
    with open(file, encoding="utf-8") as config:
        document = load_mesh_config(config.read())
    root = _object_at({} if document is None else document, "(root)")
    listed = root.get("services")
    services = _object_at({} if listed is None else listed, "services")
    entry = services.get(service)
    block = _object_at({} if entry is None else entry, f"services.{service}").get("authorization")
    return None if block is None else parse_authorization_policy(block, f"services.{service}.authorization")
