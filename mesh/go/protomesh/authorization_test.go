package protomesh_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const (
	echoMethod   = "/protomesh.interop.v1.InteropService/Echo"
	streamMethod = "/protomesh.test.v1.StreamService/Count"
)

// decodeYAMLFile decodes a YAML file into the values ParseAuthorizationPolicy takes (map[string]any,
// []any, string, nil), as LoadAuthorizationPolicy does.
func decodeYAMLFile(t *testing.T, file string) any {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var document any
	if err := yaml.Unmarshal(text, &document); err != nil {
		t.Fatalf("decoding %s: %v", file, err)
	}
	return document
}

func mustParsePolicy(t *testing.T, block any) *protomesh.AuthorizationPolicy {
	t.Helper()
	policy, err := protomesh.ParseAuthorizationPolicy(block, "authorization")
	if err != nil {
		t.Fatal(err)
	}
	return policy
}

// outcomeOf names a decision as the shared cases do: allow, deny or unauthenticated.
func outcomeOf(err error) string {
	switch status.Code(err) {
	case codes.OK:
		return "allow"
	case codes.PermissionDenied:
		return "deny"
	case codes.Unauthenticated:
		return "unauthenticated"
	default:
		return "unexpected " + err.Error()
	}
}

func TestAuthorizationDecidesEveryCaseOfTheSharedFixture(t *testing.T) {
	fixture := decodeYAMLFile(t, filepath.Join(protomeshtest.RepoRoot(t), "test", "fixtures", "authorization-cases.yaml")).(map[string]any)
	catalog := fixture["config"].(map[string]any)["services"].(map[string]any)["catalog"].(map[string]any)
	policy, err := protomesh.ParseAuthorizationPolicy(catalog["authorization"], "services.catalog.authorization")
	if err != nil {
		t.Fatal(err)
	}
	authorizer := protomesh.NewAuthorizer(policy, fixture["trustDomain"].(string))
	cases := fixture["cases"].([]any)
	if len(cases) < 10 {
		t.Fatalf("%d cases, want at least 10", len(cases))
	}
	for _, item := range cases {
		c := item.(map[string]any)
		caller, _ := c["caller"].(string)
		path, want := c["path"].(string), c["outcome"].(string)
		if got := outcomeOf(authorizer.Authorize(path, caller)); got != want {
			t.Errorf("%q calling %s: %s, want %s", caller, path, got, want)
		}
	}
}

func TestAuthorizerDecisions(t *testing.T) {
	const catalog = "/shop.catalog.v1.CatalogService"
	spiffe := func(service string) string { return protomesh.SPIFFEIDFor(testTrustDomain, service) }
	policy := mustParsePolicy(t, map[string]any{"rules": []any{
		map[string]any{"action": "allow", "callers": []any{"orders", "gateway"}, "methods": []any{"GetProduct", catalog + "/ListProducts"}},
		map[string]any{"action": "deny", "callers": []any{"gateway"}, "methods": []any{"ListProducts"}},
	}})
	wide := mustParsePolicy(t, map[string]any{"rules": []any{
		map[string]any{"action": "allow", "callers": []any{"spiffe://other.test/service/admin"}, "methods": []any{"*"}},
		map[string]any{"action": "allow", "callers": []any{"*"}, "methods": []any{catalog + "/*"}},
		map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"Charge"}},
	}})
	empty := mustParsePolicy(t, map[string]any{"rules": []any{}})
	for _, tc := range []struct {
		name        string
		policy      *protomesh.AuthorizationPolicy
		trustDomain string
		path        string
		caller      string
		want        codes.Code
		details     string
	}{
		{"an allow rule names the caller and the method by name", policy, testTrustDomain, catalog + "/GetProduct", spiffe("orders"), codes.OK, ""},
		{"an allow rule names the caller and the method by path", policy, testTrustDomain, catalog + "/ListProducts", spiffe("orders"), codes.OK, ""},
		{"a deny rule wins over an allow rule", policy, testTrustDomain, catalog + "/ListProducts", spiffe("gateway"), codes.PermissionDenied,
			"spiffe://protomesh.local/service/gateway may not call /shop.catalog.v1.CatalogService/ListProducts (denied by rules[1])"},
		{"no rule names the caller", policy, testTrustDomain, catalog + "/GetProduct", spiffe("billing"), codes.PermissionDenied,
			"spiffe://protomesh.local/service/billing may not call /shop.catalog.v1.CatalogService/GetProduct (no rule allows it)"},
		{"no rule names the method", policy, testTrustDomain, catalog + "/SearchProducts", spiffe("orders"), codes.PermissionDenied, ""},
		{"an empty policy", empty, "", catalog + "/GetProduct", spiffe("orders"), codes.PermissionDenied, ""},
		{"no peer identity", policy, testTrustDomain, catalog + "/GetProduct", "", codes.Unauthenticated,
			"/shop.catalog.v1.CatalogService/GetProduct needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID"},
		{"health without an identity", policy, testTrustDomain, "/grpc.health.v1.Health/Check", "", codes.OK, ""},
		{"health Watch for a caller no rule names", policy, testTrustDomain, "/grpc.health.v1.Health/Watch", spiffe("billing"), codes.OK, ""},
		{"reflection", policy, testTrustDomain, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", spiffe("billing"), codes.OK, ""},
		{"ORCA", policy, testTrustDomain, "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics", "", codes.OK, ""},
		{"a service name in another trust domain", policy, testTrustDomain, catalog + "/GetProduct", "spiffe://elsewhere.test/service/orders", codes.PermissionDenied, ""},
		{"a service name in any trust domain when none is known", policy, "", catalog + "/GetProduct", "spiffe://elsewhere.test/service/orders", codes.OK, ""},
		{"a service name is the whole workload path", policy, "", catalog + "/GetProduct", "spiffe://elsewhere.test/service/orders/extra", codes.PermissionDenied, ""},
		{"a full SPIFFE ID and *", wide, testTrustDomain, "/shop.billing.v1.BillingService/Refund", "spiffe://other.test/service/admin", codes.OK, ""},
		{"any caller of /<service>/*", wide, testTrustDomain, catalog + "/SearchProducts", spiffe("anyone"), codes.OK, ""},
		{"/<service>/* names only that service", wide, testTrustDomain, "/shop.billing.v1.BillingService/Refund", spiffe("anyone"), codes.PermissionDenied, ""},
		{"a method name in any service", wide, testTrustDomain, "/shop.billing.v1.BillingService/Charge", spiffe("orders"), codes.OK, ""},
		{"* needs an identity", wide, testTrustDomain, catalog + "/SearchProducts", "", codes.Unauthenticated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authorizer := protomesh.NewAuthorizer(tc.policy, tc.trustDomain)
			// Twice: the second decision comes from the method compiled by the first.
			for range 2 {
				err := authorizer.Authorize(tc.path, tc.caller)
				if st := status.Convert(err); st.Code() != tc.want || (tc.details != "" && st.Message() != tc.details) {
					t.Fatalf("%v, want %s %q", err, tc.want, tc.details)
				}
			}
		})
	}
}

func TestParseAuthorizationPolicyRefusesBadBlocksNamingTheField(t *testing.T) {
	rule := func(fields map[string]any) map[string]any { return map[string]any{"rules": []any{fields}} }
	for _, tc := range []struct {
		block any
		want  string
	}{
		{[]any{}, "authorization: must be a mapping"},
		{nil, "authorization: must be a mapping"},
		{map[string]any{"rule": []any{}}, "authorization.rule: unknown field (expected one of rules)"},
		{map[string]any{"rules": map[string]any{}}, "authorization.rules: must be a list"},
		{map[string]any{"rules": []any{"allow"}}, "authorization.rules[0]: must be a mapping"},
		{rule(map[string]any{"action": "permit", "callers": []any{"orders"}, "methods": []any{"*"}}), "authorization.rules[0].action: must be allow or deny"},
		{rule(map[string]any{"action": "allow", "callers": []any{}, "methods": []any{"*"}}), "authorization.rules[0].callers: must be a non-empty list"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders", 7.0}, "methods": []any{"*"}}), "authorization.rules[0].callers: must be a non-empty list"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders", "Orders_1"}, "methods": []any{"*"}}), "authorization.rules[0].callers[1]: must be a mesh service name"},
		{rule(map[string]any{"action": "allow", "callers": []any{"spiffe://Bad Domain/x"}, "methods": []any{"*"}}), "authorization.rules[0].callers[0]: must be"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}}), "authorization.rules[0].methods: must be a non-empty list"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"Get Product"}}), "authorization.rules[0].methods[0]: must be a method name"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"//shop.Svc/Get"}}), "authorization.rules[0].methods[0]: must be a method name"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"/grpc.health.v1.Health/Check"}}), "authorization.rules[0].methods[0]: names a mesh service"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"/grpc.health.v1.Health/*"}}), "authorization.rules[0].methods[0]: names a mesh service"},
		{rule(map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"*"}, "when": "always"}), "authorization.rules[0].when: unknown field"},
	} {
		_, err := protomesh.ParseAuthorizationPolicy(tc.block, "authorization")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error starting %q", tc.block, err, tc.want)
		}
	}
}

func TestAuthorizationWithoutTLSIsRefused(t *testing.T) {
	server := protomesh.NewServer("catalog", protomesh.WithAuthorization(mustParsePolicy(t, map[string]any{"rules": []any{}})),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info")))
	_, err := server.Listen("127.0.0.1:0")
	if err == nil || !strings.Contains(err.Error(), "catalog: authorization needs TLS") {
		t.Fatalf("Listen: %v, want authorization without TLS refused", err)
	}
}

// streamCounter is a bidirectional streaming service, for the stream interceptor: it counts the
// streams that reach it and answers each with one message.
type streamCounter struct{ calls atomic.Int64 }

var streamCounterDesc = grpc.ServiceDesc{
	ServiceName: "protomesh.test.v1.StreamService",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Count",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			srv.(*streamCounter).calls.Add(1)
			return stream.SendMsg(&interopv1.EchoResponse{Language: "go"})
		},
	}},
}

func openStream(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), tlsCallDeadline)
	defer cancel()
	stream, err := conn.NewStream(ctx, &streamCounterDesc.Streams[0], streamMethod)
	if err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(&interopv1.EchoResponse{})
}

func TestAuthorizationOverMTLS(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	files := map[string]protomesh.TLSFiles{}
	for _, service := range []string{"catalog", "orders", "gateway", "billing"} {
		files[service] = ca.issue(t, service, service, time.Now(), time.Hour)
	}
	// Signed by the mesh CA, so it passes the STRICT handshake, but it names no SPIFFE ID.
	anonymous := ca.issueNaming(t, "anonymous", "DNS:anonymous", "anonymous", time.Now(), time.Hour)
	policy := mustParsePolicy(t, map[string]any{"rules": []any{
		map[string]any{"action": "deny", "callers": []any{"gateway"}, "methods": []any{"Echo"}},
		map[string]any{"action": "allow", "callers": []any{"orders", "gateway"}, "methods": []any{echoMethod}},
		map[string]any{"action": "allow", "callers": []any{"orders"}, "methods": []any{"/protomesh.test.v1.StreamService/*"}},
	}})
	var intercepted atomic.Int64
	counting := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		intercepted.Add(1)
		return handler(ctx, req)
	}
	server := protomesh.NewServer("catalog", protomesh.WithTLS(files["catalog"]), protomesh.WithAuthorization(policy),
		protomesh.WithGRPCServerOptions(grpc.ChainUnaryInterceptor(counting)),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info")), protomesh.WithDrainGrace(time.Second))
	streams := &streamCounter{}
	server.RegisterService(&streamCounterDesc, streams)
	service, addr := serveIdentity(t, server)
	conns := map[string]*grpc.ClientConn{}
	for _, caller := range []string{"orders", "gateway", "billing"} {
		conns[caller] = dialTLS(t, addr, files[caller], "catalog")
	}
	conns["anonymous"] = dialTLS(t, addr, anonymous, "catalog")

	// Each refusal leaves the handlers' counts and the application interceptor's where they were.
	assertCounts := func(t *testing.T, echoes, streamsSeen int64) {
		t.Helper()
		if got := service.calls.Load(); got != echoes {
			t.Errorf("Echo handler calls %d, want %d", got, echoes)
		}
		if got := intercepted.Load(); got != echoes {
			t.Errorf("application interceptor calls %d, want %d", got, echoes)
		}
		if got := streams.calls.Load(); got != streamsSeen {
			t.Errorf("stream handler calls %d, want %d", got, streamsSeen)
		}
	}
	t.Run("an allowed caller reaches the handler", func(t *testing.T) {
		response, err, _ := echo(conns["orders"])
		if err != nil || response.GetEndpoint() != protomesh.SPIFFEIDFor(testTrustDomain, "orders") {
			t.Fatalf("orders Echo: %v %v", response, err)
		}
		if err := openStream(conns["orders"]); err != nil {
			t.Fatalf("orders stream: %v", err)
		}
		assertCounts(t, 1, 1)
	})
	t.Run("a caller a deny rule names gets PERMISSION_DENIED before the handler", func(t *testing.T) {
		_, err, _ := echo(conns["gateway"])
		want := "spiffe://protomesh.local/service/gateway may not call " + echoMethod + " (denied by rules[0])"
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Fatalf("gateway Echo: %v, want PERMISSION_DENIED %q", err, want)
		}
		assertCounts(t, 1, 1)
	})
	t.Run("a caller no rule allows gets PERMISSION_DENIED, on a unary call and a stream", func(t *testing.T) {
		_, err, _ := echo(conns["billing"])
		want := "spiffe://protomesh.local/service/billing may not call " + echoMethod + " (no rule allows it)"
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Fatalf("billing Echo: %v, want PERMISSION_DENIED %q", err, want)
		}
		err = openStream(conns["gateway"])
		want = "spiffe://protomesh.local/service/gateway may not call " + streamMethod + " (no rule allows it)"
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != want {
			t.Fatalf("gateway stream: %v, want PERMISSION_DENIED %q", err, want)
		}
		assertCounts(t, 1, 1)
	})
	t.Run("a caller whose certificate names no SPIFFE ID gets UNAUTHENTICATED", func(t *testing.T) {
		_, err, _ := echo(conns["anonymous"])
		want := echoMethod + " needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID"
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != want {
			t.Fatalf("anonymous Echo: %v, want UNAUTHENTICATED %q", err, want)
		}
		if err := openStream(conns["anonymous"]); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("anonymous stream: %v, want UNAUTHENTICATED", err)
		}
		assertCounts(t, 1, 1)
	})
	t.Run("the health check is answered for a caller no rule names and one without an identity", func(t *testing.T) {
		for _, caller := range []string{"billing", "anonymous"} {
			ctx, cancel := context.WithTimeout(context.Background(), tlsCallDeadline)
			response, err := healthpb.NewHealthClient(conns[caller]).Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil || response.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("%s health Check: %v %v, want SERVING", caller, response, err)
			}
		}
	})
}

func TestLoadAuthorizationPolicyReadsTheServicesOwnBlock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "mesh.yaml")
	writeFile(t, file, "services:\n  catalog:\n    lb_policy: round_robin\n    authorization:\n      rules:\n        - { action: allow, callers: ['*'], methods: ['*'] }\n  orders: {}\n")
	policy, err := protomesh.LoadAuthorizationPolicy(file, "catalog")
	want := protomesh.AuthorizationRule{Action: protomesh.AuthorizationAllow, Callers: []string{"*"}, Methods: []string{"*"}}
	if err != nil || len(policy.Rules) != 1 || !slices.Equal(policy.Rules[0].Callers, want.Callers) ||
		!slices.Equal(policy.Rules[0].Methods, want.Methods) || policy.Rules[0].Action != want.Action {
		t.Fatalf("catalog: %+v %v, want %+v", policy, err, want)
	}
	for _, service := range []string{"orders", "billing"} {
		if policy, err := protomesh.LoadAuthorizationPolicy(file, service); policy != nil || err != nil {
			t.Fatalf("%s: %+v %v, want no policy", service, policy, err)
		}
	}
	for _, tc := range []struct{ content, want string }{
		{"services:\n  catalog:\n    authorization:\n      rules: [{ action: allow }]\n", "services.catalog.authorization.rules[0].callers: must be a non-empty list"},
		{"services:\n  catalog:\n    authorization:\n      rules:\n        - action: maybe\n          callers: [orders]\n          methods: ['*']\n", "services.catalog.authorization.rules[0].action: must be allow or deny"},
		{"services:\n  catalog:\n    authorization:\n      rules:\n        - action: allow\n          callers: [orders]\n          methods: [Get-Product]\n", "services.catalog.authorization.rules[0].methods[0]: must be a method name"},
		{"services:\n  catalog: [a]\n", "services.catalog: must be a mapping"},
		{"services: [catalog]\n", "services: must be a mapping"},
		{"services:\n  catalog: {\n", "(file): not valid YAML"},
	} {
		writeFile(t, file, tc.content)
		if _, err := protomesh.LoadAuthorizationPolicy(file, "catalog"); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error starting %q", tc.content, err, tc.want)
		}
	}
	writeFile(t, file, "")
	if policy, err := protomesh.LoadAuthorizationPolicy(file, "catalog"); policy != nil || err != nil {
		t.Fatalf("an empty file: %+v %v, want no policy", policy, err)
	}
}

// TestAuthorizationFromTheMeshConfigInTheSettings is how a program turns it on: PROTOMESH_TLS_*
// and PROTOMESH_MESH_CONFIG, applied by WithSettings.
func TestAuthorizationFromTheMeshConfigInTheSettings(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	ordersFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	billingFiles := ca.issue(t, "billing", "billing", time.Now(), time.Hour)
	config := filepath.Join(t.TempDir(), "mesh.yaml")
	settingsOf := func(t *testing.T, withTLS bool) protomesh.Settings {
		env := map[string]string{protomesh.EnvMeshConfig: config}
		if withTLS {
			env[protomesh.EnvTLSCAFile], env[protomesh.EnvTLSCertFile], env[protomesh.EnvTLSKeyFile] = serverFiles.CAFile, serverFiles.CertFile, serverFiles.KeyFile
		}
		settings, err := protomesh.LoadSettings(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
		if err != nil || settings.MeshConfig != config {
			t.Fatalf("settings %+v %v", settings, err)
		}
		return settings
	}
	newServer := func(t *testing.T, withTLS bool) *protomesh.Server {
		return protomesh.NewServer("catalog", protomesh.WithSettings(settingsOf(t, withTLS)),
			protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info")), protomesh.WithDrainGrace(time.Second))
	}
	t.Run("the service's block is enforced", func(t *testing.T) {
		writeFile(t, config, "services:\n  catalog:\n    authorization:\n      rules:\n        - { action: allow, callers: [orders], methods: [Echo] }\n")
		service, addr := serveIdentity(t, newServer(t, true))
		if _, err, _ := echo(dialTLS(t, addr, ordersFiles, "catalog")); err != nil {
			t.Fatalf("orders: %v", err)
		}
		if _, err, _ := echo(dialTLS(t, addr, billingFiles, "catalog")); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("billing: %v, want PERMISSION_DENIED", err)
		}
		if got := service.calls.Load(); got != 1 {
			t.Fatalf("handler calls %d, want 1", got)
		}
	})
	t.Run("no block for the service is no policy", func(t *testing.T) {
		writeFile(t, config, "services:\n  orders:\n    authorization:\n      rules: []\n")
		_, addr := serveIdentity(t, newServer(t, true))
		if _, err, _ := echo(dialTLS(t, addr, billingFiles, "catalog")); err != nil {
			t.Fatalf("billing: %v", err)
		}
	})
	t.Run("without TLS the file is not read", func(t *testing.T) {
		writeFile(t, config, "services:\n  catalog:\n    authorization:\n      rules: []\n")
		_, addr := serveIdentity(t, newServer(t, false))
		if _, err, _ := echo(plainConn(t, addr)); err != nil {
			t.Fatalf("plaintext: %v", err)
		}
	})
	t.Run("a bad block is an error of Listen naming the field", func(t *testing.T) {
		writeFile(t, config, "services:\n  catalog:\n    authorization:\n      rules:\n        - { action: permit, callers: [orders], methods: ['*'] }\n")
		_, err := newServer(t, true).Listen("127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), "services.catalog.authorization.rules[0].action: must be allow or deny") {
			t.Fatalf("Listen: %v, want the field named", err)
		}
	})
}
