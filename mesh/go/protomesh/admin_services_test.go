package protomesh_test

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	statusv3 "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
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
	// It answers; the kit's own xDS channels are not in what it reports (admin_services.go).
	if _, err := statusv3.NewClientStatusDiscoveryServiceClient(plainConn(t, m.server.Addr().String())).FetchClientStatus(ctx, &statusv3.ClientStatusRequest{}); err != nil {
		t.Fatalf("FetchClientStatus: %v", err)
	}
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
