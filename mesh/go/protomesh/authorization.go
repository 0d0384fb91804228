package protomesh

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Per-method authorization of a server's callers by their SPIFFE ID (issue 13), the Go side of
// mesh/authorization.ts, with the semantics of gRPC's own authorization policy (gRFC A43) and
// Istio's AuthorizationPolicy: a deny rule that matches wins over any allow rule; once a policy
// exists a call no allow rule matches is refused (default deny), PERMISSION_DENIED; a call without
// a peer identity is refused UNAUTHENTICATED. The mesh's own services (health, reflection, ORCA:
// meshServices) are never authorized, so probes and load reports keep working. Matching is on the
// method's registered path: grpc-go routes by the exact :path before any interceptor runs, so
// another spelling of a path never reaches a handler (it gets UNIMPLEMENTED) and cannot slip past a rule.

// AuthorizationAction is what a rule does to the calls it matches: "allow" or "deny".
type AuthorizationAction string

// The actions of a rule.
const (
	AuthorizationAllow AuthorizationAction = "allow"
	AuthorizationDeny  AuthorizationAction = "deny"
)

// AuthorizationRule is one rule of a policy: Action for calls of any of Methods by any of Callers.
type AuthorizationRule struct {
	Action AuthorizationAction
	// Callers are who: "*" (any caller with a mesh identity), a mesh service name ("orders": its
	// SPIFFE ID spiffe://<trust domain>/service/orders), or a full SPIFFE ID.
	Callers []string
	// Methods are what: "*" (every method of the server's application services), "/pkg.Service/*"
	// (every method of one), a full path ("/pkg.Service/Method"), or a method name ("Method", of any of them).
	Methods []string
}

// AuthorizationPolicy is a validated authorization block: its rules, in the order written.
type AuthorizationPolicy struct {
	Rules []AuthorizationRule
}

var (
	// "*", "/pkg.Service/*", "/pkg.Service/Method" or "Method" (mesh/authorization.ts METHOD_PATTERN).
	authorizationMethodPattern = regexp.MustCompile(`^(\*|/[A-Za-z_][A-Za-z0-9_.]*/\*|(/[A-Za-z_][A-Za-z0-9_.]*/)?[A-Za-z_][A-Za-z0-9_]*)$`)
	// A SPIFFE ID (SPIFFE ID spec, 2.1 and 2.2): spiffe://<trust domain>/<segment>[/<segment>...].
	spiffeIDPattern = regexp.MustCompile(`^spiffe://([^/]+)(/[A-Za-z0-9._-]+)+$`)
	// A trust domain (SPIFFE ID spec, 2.1; mesh/identity.ts TRUST_DOMAIN_PATTERN).
	trustDomainPattern = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)
	// The service name of a mesh workload's SPIFFE ID.
	serviceOfSPIFFEID = regexp.MustCompile(`^spiffe://[^/]+/service/([^/]+)$`)
	// A method path's parts (mesh/method-path.ts).
	methodPathPattern = regexp.MustCompile(`^/([^/]+)/([^/]+)$`)
)

// ParseAuthorizationPolicy validates an authorization block, as decoded from YAML or JSON into
// map[string]any, []any and string values, into a policy. Anything wrong is refused with an error
// naming the field under field, e.g. `services.catalog.authorization.rules[0].action: must be
// allow or deny` (mesh/authorization.ts parseAuthorizationPolicy, the same checks and words). An
// empty rules list is a policy that refuses every call of the application's methods.
func ParseAuthorizationPolicy(block any, field string) (*AuthorizationPolicy, error) {
	node, err := mappingAt(block, field)
	if err != nil {
		return nil, err
	}
	if err := knownKeys(node, field, "rules"); err != nil {
		return nil, err
	}
	items, ok := node["rules"].([]any)
	if !ok {
		return nil, fieldError(field+".rules", "must be a list of rules ({ action, callers, methods })")
	}
	policy := &AuthorizationPolicy{Rules: make([]AuthorizationRule, 0, len(items))}
	for i, item := range items {
		rule, err := parseAuthorizationRule(item, field+".rules["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		policy.Rules = append(policy.Rules, rule)
	}
	return policy, nil
}

func parseAuthorizationRule(value any, field string) (AuthorizationRule, error) {
	node, err := mappingAt(value, field)
	if err != nil {
		return AuthorizationRule{}, err
	}
	if err := knownKeys(node, field, "action", "callers", "methods"); err != nil {
		return AuthorizationRule{}, err
	}
	action, _ := node["action"].(string)
	if action != string(AuthorizationAllow) && action != string(AuthorizationDeny) {
		return AuthorizationRule{}, fieldError(field+".action", "must be allow or deny")
	}
	callers, err := nonEmptyStrings(node["callers"], field+".callers", `mesh service names (orders), SPIFFE IDs or "*"`)
	if err != nil {
		return AuthorizationRule{}, err
	}
	for i, caller := range callers {
		if caller != "*" && !serviceNamePattern.MatchString(caller) && !isSPIFFEID(caller) {
			return AuthorizationRule{}, fieldError(fmt.Sprintf("%s.callers[%d]", field, i),
				`must be a mesh service name (orders), a SPIFFE ID (spiffe://protomesh.local/service/orders) or "*", got `+strconv.Quote(caller))
		}
	}
	methods, err := nonEmptyStrings(node["methods"], field+".methods", `method names (GetProduct), full paths or "*"`)
	if err != nil {
		return AuthorizationRule{}, err
	}
	for i, method := range methods {
		methodField := fmt.Sprintf("%s.methods[%d]", field, i)
		if !authorizationMethodPattern.MatchString(method) {
			return AuthorizationRule{}, fieldError(methodField,
				`must be a method name (GetProduct), a full path (/shop.catalog.v1.CatalogService/GetProduct), /<service>/* or "*", got `+strconv.Quote(method))
		}
		if service, _ := splitMethod(method); strings.HasPrefix(method, "/") && slices.Contains(meshServices, service) {
			return AuthorizationRule{}, fieldError(methodField, "names a mesh service (health, reflection, ORCA), whose calls are never authorized")
		}
	}
	return AuthorizationRule{Action: AuthorizationAction(action), Callers: callers, Methods: methods}, nil
}

// fieldError is a config error naming the field it is about (mesh/errors.ts invalidArgument).
func fieldError(field, problem string) error {
	return fmt.Errorf("%s: %s", field, problem)
}

// mappingAt is value as a mapping of a decoded config document; anything else is refused
// (mesh/config-fields.ts objectAt). A YAML mapping with keys that are not all strings decodes to
// map[any]any; its keys are taken in their YAML spelling.
func mappingAt(value any, field string) (map[string]any, error) {
	switch node := value.(type) {
	case map[string]any:
		if node != nil {
			return node, nil
		}
	case map[any]any:
		if node != nil {
			converted := make(map[string]any, len(node))
			for key, item := range node {
				converted[fmt.Sprint(key)] = item
			}
			return converted, nil
		}
	}
	return nil, fieldError(field, "must be a mapping")
}

// knownKeys refuses a key of node that is not one of keys, so that a typo never passes as a
// default (mesh/config-fields.ts knownKeys); of several, the first in sorted order.
func knownKeys(node map[string]any, field string, keys ...string) error {
	unknown := make([]string, 0)
	for key := range node {
		if !slices.Contains(keys, key) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	name := unknown[0]
	if field != "" {
		name = field + "." + name
	}
	return fieldError(name, "unknown field (expected one of "+strings.Join(keys, ", ")+")")
}

func nonEmptyStrings(value any, field, what string) ([]string, error) {
	items, ok := value.([]any)
	if !ok || len(items) == 0 {
		return nil, fieldError(field, "must be a non-empty list of "+what)
	}
	texts := make([]string, 0, len(items))
	for _, item := range items {
		text, ok := item.(string)
		if !ok {
			return nil, fieldError(field, "must be a non-empty list of "+what)
		}
		texts = append(texts, text)
	}
	return texts, nil
}

func isSPIFFEID(value string) bool {
	m := spiffeIDPattern.FindStringSubmatch(value)
	return m != nil && trustDomainPattern.MatchString(m[1])
}

// callerSet is the callers of rules, compiled for a set lookup per call.
type callerSet struct {
	isAny     bool
	spiffeIDs map[string]bool
	// serviceNames match in any trust domain; empty when the server's trust domain is known.
	serviceNames map[string]bool
}

func (c *callerSet) contains(spiffeID string) bool {
	if c.isAny || c.spiffeIDs[spiffeID] {
		return true
	}
	if len(c.serviceNames) == 0 {
		return false
	}
	m := serviceOfSPIFFEID.FindStringSubmatch(spiffeID)
	return m != nil && c.serviceNames[m[1]]
}

// methodAuthorization is how the calls of one method are authorized: the policy's rules for it, compiled.
type methodAuthorization struct {
	path string
	// isExempt: the method is a mesh service's (health, reflection, ORCA); every call is allowed.
	isExempt bool
	denies   []indexedCallers
	allows   *callerSet
}

type indexedCallers struct {
	index   int
	callers *callerSet
}

// check decides a call of this method by the caller's SPIFFE ID ("": no peer identity): nil to
// allow it, else the status error the caller gets.
func (m *methodAuthorization) check(spiffeID string) error {
	if m.isExempt {
		return nil
	}
	if spiffeID == "" {
		return status.Error(codes.Unauthenticated, m.path+" needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID")
	}
	for _, deny := range m.denies {
		if deny.callers.contains(spiffeID) {
			return refusal(spiffeID, m.path, "denied by rules["+strconv.Itoa(deny.index)+"]")
		}
	}
	if m.allows.contains(spiffeID) {
		return nil
	}
	return refusal(spiffeID, m.path, "no rule allows it")
}

func refusal(spiffeID, path, why string) error {
	return status.Error(codes.PermissionDenied, spiffeID+" may not call "+path+" ("+why+")")
}

// maxAuthorizedPaths bounds an Authorizer's compiled methods: a server serves a fixed set (grpc-go
// answers any other path UNIMPLEMENTED before the interceptors, unless an unknown-service handler
// takes them), so the bound only guards against a caller that would mint paths (mesh/method-path.ts).
const maxAuthorizedPaths = 4096

// Authorizer decides calls under a policy for a server, the policy compiled per method path on
// the method's first call: a call costs a map lookup and a few set lookups. Safe for concurrent use.
type Authorizer struct {
	policy      *AuthorizationPolicy
	trustDomain string
	methods     sync.Map // path → *methodAuthorization
	cached      atomic.Int64
}

// NewAuthorizer compiles policy for a server in trustDomain: a caller given as a service name
// matches only spiffe://<trustDomain>/service/<name>; with trustDomain "", that name in any trust domain.
func NewAuthorizer(policy *AuthorizationPolicy, trustDomain string) *Authorizer {
	return &Authorizer{policy: policy, trustDomain: trustDomain}
}

// Authorize decides a call of fullMethod ("/pkg.Service/Method") by the caller spiffeID (""
// when the call has no peer identity): nil allows it; a refusal is a status error, UNAUTHENTICATED
// without an identity, PERMISSION_DENIED when a deny rule matches or no allow rule does.
func (a *Authorizer) Authorize(fullMethod, spiffeID string) error {
	return a.method(fullMethod).check(spiffeID)
}

func (a *Authorizer) method(path string) *methodAuthorization {
	if compiled, ok := a.methods.Load(path); ok {
		return compiled.(*methodAuthorization)
	}
	compiled := a.compile(path)
	if a.cached.Load() < maxAuthorizedPaths {
		if _, loaded := a.methods.LoadOrStore(path, compiled); !loaded {
			a.cached.Add(1)
		}
	}
	return compiled
}

func (a *Authorizer) compile(path string) *methodAuthorization {
	service, method := path, ""
	if m := methodPathPattern.FindStringSubmatch(path); m != nil {
		service, method = m[1], m[2]
	}
	if slices.Contains(meshServices, service) {
		return &methodAuthorization{path: path, isExempt: true}
	}
	compiled := &methodAuthorization{path: path}
	var allowed []string
	for i, rule := range a.policy.Rules {
		if !slices.ContainsFunc(rule.Methods, func(pattern string) bool { return methodMatches(pattern, path, service, method) }) {
			continue
		}
		if rule.Action == AuthorizationDeny {
			compiled.denies = append(compiled.denies, indexedCallers{index: i, callers: a.callerSet(rule.Callers)})
		} else {
			allowed = append(allowed, rule.Callers...)
		}
	}
	compiled.allows = a.callerSet(allowed)
	return compiled
}

func (a *Authorizer) callerSet(callers []string) *callerSet {
	set := &callerSet{spiffeIDs: map[string]bool{}, serviceNames: map[string]bool{}}
	for _, caller := range callers {
		switch {
		case caller == "*" || strings.HasPrefix(caller, "spiffe://"):
			set.spiffeIDs[caller] = true
		case a.trustDomain != "":
			set.spiffeIDs[SPIFFEIDFor(a.trustDomain, caller)] = true
		default:
			set.serviceNames[caller] = true
		}
	}
	set.isAny = set.spiffeIDs["*"]
	return set
}

func methodMatches(pattern, path, service, method string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "/*"):
		return pattern[1:len(pattern)-2] == service
	case strings.HasPrefix(pattern, "/"):
		return pattern == path
	default:
		return pattern == method
	}
}
