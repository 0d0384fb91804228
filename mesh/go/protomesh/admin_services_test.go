package protomesh_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	catalogv1 "github.com/protomesh/protomesh/generated/go/shop/catalog/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpc-go's admin services on a kit server's gRPC port (admin_services.go): channelz and CSDS,
// called with their generated clients and with grpcurl through reflection, as an operator would.
// Channelz is the process's, so the tests find their own server and channel in it.

// listenPort is the port of the server's listen socket (channelz lists every server of the process).
func listenPort(ctx context.Context, t *testing.T, client channelzpb.ChannelzClient, server *channelzpb.Server) int {
	t.Helper()
	for _, ref := range server.GetListenSocket() {
		response, err := client.GetSocket(ctx, &channelzpb.GetSocketRequest{SocketId: ref.GetSocketId()})
		if err != nil {
			t.Fatalf("GetSocket(%d): %v", ref.GetSocketId(), err)
		}
		if tcp := response.GetSocket().GetLocal().GetTcpipAddress(); tcp != nil {
			return int(tcp.GetPort())
		}
	}
	return 0
}

func TestChannelzListsTheServerAndTheClientChannelWithTheirCalls(t *testing.T) {
	m := startMeteredServer(t, "kit-channelz")
	for _, text := range []string{"a", "b", "missing"} {
		m.echo(t, text)
	}
	addr := m.server.Addr().String()
	client := channelzpb.NewChannelzClient(plainConn(t, addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	servers, err := client.GetServers(ctx, &channelzpb.GetServersRequest{})
	if err != nil {
		t.Fatalf("GetServers: %v", err)
	}
	var found *channelzpb.ServerData
	for _, server := range servers.GetServer() {
		if listenPort(ctx, t, client, server) == m.server.Addr().(*net.TCPAddr).Port {
			found = server.GetData()
		}
	}
	// The GetServers call is under way on this server: started, not yet ended.
	if found == nil || found.GetCallsStarted() != 4 || found.GetCallsSucceeded() != 2 || found.GetCallsFailed() != 1 {
		t.Fatalf("channelz server on %s: %v, want 4 calls started, 2 succeeded, 1 failed", addr, found)
	}

	channels, err := client.GetTopChannels(ctx, &channelzpb.GetTopChannelsRequest{})
	if err != nil {
		t.Fatalf("GetTopChannels: %v", err)
	}
	var targeted []*channelzpb.ChannelData
	for _, channel := range channels.GetChannel() {
		if channel.GetData().GetTarget() == addr {
			targeted = append(targeted, channel.GetData())
		}
	}
	isKitChannel := func(data *channelzpb.ChannelData) bool {
		return data.GetCallsStarted() == 3 && data.GetCallsSucceeded() == 2 && data.GetCallsFailed() == 1
	}
	if !slices.ContainsFunc(targeted, isKitChannel) {
		t.Fatalf("channelz channels to %s: %v, want the kit client's with 3 calls started, 2 succeeded, 1 failed", addr, targeted)
	}
}

func TestCSDSAnswersOnAServerWithAnAdminAddress(t *testing.T) {
	m := startMeteredServer(t, "kit-csds")
	if got, want := m.server.AdminServices(), []string{protomesh.ChannelzServiceName, protomesh.CSDSServiceName}; !slices.Equal(got, want) {
		t.Fatalf("AdminServices: %v, want %v", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// It answers; this process has no bootstrap of its own, so no xDS client of the kit is in it.
	if _, err := statusv3.NewClientStatusDiscoveryServiceClient(plainConn(t, m.server.Addr().String())).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{}); err != nil {
		t.Fatalf("FetchClientStatus: %v", err)
	}
}

// csdsChildEnv marks the test binary run as the kit process of
// TestCSDSShowsTheXDSConfigOfTheKitChannelsToItsControlPlane. grpc-go's default xDS client pool,
// the one CSDS reports, is process-global and takes its bootstrap from the environment the process
// starts with (xds_bootstrap.go), so that process is a child started with its bootstrap: this
// process's default pool stays unconfigured and untouched, and no test depends on the order tests
// run in.
const csdsChildEnv = "PROTOMESH_TEST_CSDS_CHILD"

func TestCSDSShowsTheXDSConfigOfTheKitChannelsToItsControlPlane(t *testing.T) {
	if os.Getenv(csdsChildEnv) != "" {
		csdsOfAKitProcess(t)
		return
	}
	cp := protomeshtest.StartControlPlane(t, testMesh)
	startCatalog(t, cp)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	child.Env = append(os.Environ(), csdsChildEnv+"=1", "PROTOMESH_CONTROL_PLANE="+cp.Addr, "PROTOMESH_ZONE=",
		"GRPC_XDS_BOOTSTRAP=", "GRPC_XDS_BOOTSTRAP_CONFIG="+string(protomesh.XDSBootstrap(cp.Addr, "", nil)))
	output, err := child.CombinedOutput()
	if err != nil {
		t.Fatalf("the kit process: %v\n%s", err, output)
	}
	t.Logf("the kit process:\n%s", output)
}

// csdsOfAKitProcess is the kit process started with its control plane's bootstrap: a kit server with
// an admin address and a kit client of catalog, which makes one call; then the server's CSDS holds
// catalog's Listener, RouteConfiguration, Cluster and ClusterLoadAssignment, ACKED.
func csdsOfAKitProcess(t *testing.T) {
	settings, err := protomesh.LoadSettings(os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "kit-csds-xds", protomesh.WithAdminAddress("127.0.0.1:0"))
	conn, err := protomesh.Dial("catalog", protomesh.DialSettings(settings), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := catalogv1.NewCatalogServiceClient(conn).GetProduct(ctx, &catalogv1.GetProductRequest{Id: "sku-1001"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("GetProduct through xds:///catalog: %v", err)
	}

	response, err := statusv3.NewClientStatusDiscoveryServiceClient(plainConn(t, s.addr)).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{})
	if err != nil {
		t.Fatalf("FetchClientStatus: %v", err)
	}
	var bootstrap struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if err := json.Unmarshal([]byte(os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG")), &bootstrap); err != nil {
		t.Fatal(err)
	}
	if len(response.GetConfig()) != 1 || response.GetConfig()[0].GetNode().GetId() != bootstrap.Node.ID {
		t.Fatalf("CSDS: %v, want one xDS client, of node %s", response, bootstrap.Node.ID)
	}
	config := response.GetConfig()[0]
	t.Logf("CSDS client %q, node %s:", config.GetClientScope(), config.GetNode().GetId())
	for _, resource := range config.GetGenericXdsConfigs() {
		t.Logf("  %s %q %s", resource.GetTypeUrl(), resource.GetName(), resource.GetClientStatus())
	}
	for _, kind := range []string{"envoy.config.listener.v3.Listener", "envoy.config.route.v3.RouteConfiguration",
		"envoy.config.cluster.v3.Cluster", "envoy.config.endpoint.v3.ClusterLoadAssignment"} {
		if !slices.ContainsFunc(config.GetGenericXdsConfigs(), func(resource *statusv3.ClientConfig_GenericXdsConfig) bool {
			return resource.GetTypeUrl() == "type.googleapis.com/"+kind && strings.Contains(resource.GetName(), "catalog") &&
				resource.GetClientStatus() == adminv3.ClientResourceStatus_ACKED
		}) {
			t.Errorf("CSDS: no ACKED %s of catalog among %v", kind, config.GetGenericXdsConfigs())
		}
	}
}

// startCatalog starts the TypeScript catalog (node dist/services/catalog/main.js) on a free port,
// registered with cp, and waits until it is HEALTHY there; it is stopped at cleanup.
func startCatalog(t *testing.T, cp *protomeshtest.ControlPlane) {
	t.Helper()
	port := protomeshtest.FreePort(t)
	catalog := exec.Command("node", filepath.Join(protomeshtest.RepoRoot(t), "dist", "services", "catalog", "main.js"))
	catalog.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "HOST=127.0.0.1", "PROTOMESH_CONTROL_PLANE="+cp.Addr,
		"PROTOMESH_ADMIN_ADDRESS=", "PROTOMESH_LOG_LEVEL=warn")
	catalog.Stderr = os.Stderr
	if err := catalog.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = catalog.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = catalog.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = catalog.Process.Kill()
			<-exited
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	protomeshtest.Eventually(t, 10*time.Second, "catalog HEALTHY", func() bool { return cp.Endpoints(t, "catalog")[addr] == "HEALTH_STATE_HEALTHY" })
}

func TestAdminServicesAreOnlyOnAServerWithAnAdminAddressUnlessTurnedOff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		options []protomesh.ServerOption
	}{
		{"no admin address", nil},
		{"WithoutAdminServices", []protomesh.ServerOption{protomesh.WithAdminAddress("127.0.0.1:0"), protomesh.WithoutAdminServices()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "kit-no-admin-services", tc.options...)
			if names := s.server.AdminServices(); names != nil {
				t.Errorf("AdminServices: %v, want none", names)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := channelzpb.NewChannelzClient(plainConn(t, s.addr)).GetTopChannels(ctx, &channelzpb.GetTopChannelsRequest{})
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("GetTopChannels: %v, want UNIMPLEMENTED", err)
			}
		})
	}
}

func TestGrpcurlListsAndCallsTheAdminServicesThroughReflection(t *testing.T) {
	grpcurl := protomeshtest.RequireTool(t, "grpcurl")
	m := startMeteredServer(t, "kit-admin-grpcurl")
	m.echo(t, "a")
	addr := m.server.Addr().String()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		output, err := exec.CommandContext(ctx, grpcurl, append([]string{"-plaintext"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, output)
		}
		return string(output)
	}
	listed := strings.Fields(run(addr, "list"))
	for _, want := range []string{protomesh.ChannelzServiceName, protomesh.CSDSServiceName} {
		if !slices.Contains(listed, want) {
			t.Errorf("grpcurl list: %v, want %s among them", listed, want)
		}
	}
	// grpcurl prints the response as protojson: int64 counts are strings.
	var topChannels struct {
		Channel []grpcurlChannel `json:"channel"`
	}
	if err := json.Unmarshal([]byte(run(addr, protomesh.ChannelzServiceName+"/GetTopChannels")), &topChannels); err != nil {
		t.Fatalf("GetTopChannels' JSON: %v", err)
	}
	if !slices.ContainsFunc(topChannels.Channel, func(c grpcurlChannel) bool {
		return c.Data.Target == addr && c.Data.CallsSucceeded == "1"
	}) {
		t.Errorf("grpcurl GetTopChannels: %+v, want the kit client's channel to %s with 1 call succeeded", topChannels.Channel, addr)
	}
	run(addr, protomesh.CSDSServiceName+"/FetchClientStatus")
}

// grpcurlChannel is what the test reads of a channelz Channel as grpcurl prints it.
type grpcurlChannel struct {
	Data struct {
		Target         string `json:"target"`
		CallsSucceeded string `json:"callsSucceeded"`
	} `json:"data"`
}
