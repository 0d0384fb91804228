package protomesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// syncBuffer is a log destination tests read while servers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON lines written so far whose msg is msg.
func (b *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var found []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if fields["msg"] == msg {
			found = append(found, fields)
		}
	}
	return found
}

// relayService answers Hold with its view of the call, relaying to next when asked; it reports
// how each held call ended on ended.
type relayService struct {
	interopv1.UnimplementedInteropServiceServer
	endpoint string
	next     *grpc.ClientConn
	ended    chan string
}

func (s *relayService) Echo(_ context.Context, req *interopv1.EchoRequest) (*interopv1.EchoResponse, error) {
	return &interopv1.EchoResponse{Payload: req.GetPayload(), Language: "go", Endpoint: s.endpoint}, nil
}

func (s *relayService) Hold(ctx context.Context, req *interopv1.HoldRequest) (*interopv1.HoldResponse, error) {
	hop := &interopv1.Hop{Endpoint: s.endpoint, RemainingMs: -1, RequestId: protomesh.RequestIDFrom(ctx)}
	if deadline, ok := ctx.Deadline(); ok {
		hop.RemainingMs = time.Until(deadline).Milliseconds()
	}
	if len(req.GetRelayTo()) > 0 {
		response, err := interopv1.NewInteropServiceClient(s.next).Hold(ctx, &interopv1.HoldRequest{HoldMs: req.GetHoldMs()})
		if err != nil {
			return nil, err
		}
		return &interopv1.HoldResponse{Hops: append([]*interopv1.Hop{hop}, response.GetHops()...)}, nil
	}
	select {
	case <-time.After(time.Duration(req.GetHoldMs()) * time.Millisecond):
		s.report("done")
		return &interopv1.HoldResponse{Hops: []*interopv1.Hop{hop}}, nil
	case <-ctx.Done():
		s.report(ctx.Err().Error())
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (s *relayService) report(reason string) {
	if s.ended != nil {
		s.ended <- reason
	}
}

type testServer struct {
	server  *protomesh.Server
	service *relayService
	addr    string
	logs    *syncBuffer
}

// startServer starts a kit server of relayService on 127.0.0.1:0, drained at cleanup.
func startServer(t *testing.T, name string, options ...protomesh.ServerOption) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	server := protomesh.NewServer(name, append([]protomesh.ServerOption{protomesh.WithLogger(protomesh.NewLogger(logs, name, "debug")), protomesh.WithDrainGrace(2 * time.Second)}, options...)...)
	service := &relayService{ended: make(chan string, 8)}
	interopv1.RegisterInteropServiceServer(server, service)
	addr := listenOnLoopback(t, server)
	service.endpoint = addr
	return &testServer{server: server, service: service, addr: addr, logs: logs}
}

// listenOnLoopback has server listen on 127.0.0.1:0, drained at cleanup, and returns its address.
func listenOnLoopback(t *testing.T, server *protomesh.Server) string {
	t.Helper()
	addr, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Drain)
	return addr.String()
}

func plainConn(t *testing.T, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestServerServesHealthCheckAndWatch(t *testing.T) {
	s := startServer(t, "kit-health")
	client := healthpb.NewHealthClient(plainConn(t, s.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, service := range []string{"", "protomesh.interop.v1.InteropService"} {
		response, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || response.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q): %v %v, want SERVING", service, response, err)
		}
	}
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v %v, want SERVING", first, err)
	}
	go s.server.Drain()
	// The drain reports NOT_SERVING, then ends the stream rather than wait the grace period for it.
	for {
		update, err := watch.Recv()
		if err != nil {
			if code := status.Code(err); code != codes.Unavailable {
				t.Fatalf("Watch ended with %v, want UNAVAILABLE", err)
			}
			break
		}
		if update.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch update %v, want NOT_SERVING", update)
		}
	}
}

func TestServerServesReflection(t *testing.T) {
	s := startServer(t, "kit-reflection")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(plainConn(t, s.addr)).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	response, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, service := range response.GetListServicesResponse().GetService() {
		names = append(names, service.GetName())
	}
	for _, want := range []string{"protomesh.interop.v1.InteropService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Fatalf("reflection lists %v, want %s among them", names, want)
		}
	}
	_ = stream.CloseSend()
}

func TestServerLogsOneLinePerCallAndEchoesTheRequestID(t *testing.T) {
	s := startServer(t, "kit-logs")
	client := interopv1.NewInteropServiceClient(plainConn(t, s.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var header metadata.MD
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "req-42")
	if _, err := client.Echo(ctx, &interopv1.EchoRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-request-id"); !slices.Equal(got, []string{"req-42"}) {
		t.Fatalf("x-request-id in the response headers: %v, want [req-42]", got)
	}
	// A call without one gets a new id, echoed too.
	if _, err := client.Echo(context.Background(), &interopv1.EchoRequest{}, grpc.Header(&header)); err != nil || len(header.Get("x-request-id")[0]) != 36 {
		t.Fatalf("x-request-id made by the server: %v %v, want a UUID", header.Get("x-request-id"), err)
	}
	lines := s.logs.lines(t, "call")
	var echo map[string]any
	for _, line := range lines {
		if line["requestId"] == "req-42" {
			if echo != nil {
				t.Fatal("two log lines for one call")
			}
			echo = line
		}
	}
	if echo == nil {
		t.Fatalf("no log line for Echo among %v", lines)
	}
	for key, want := range map[string]any{"level": 30.0, "name": "kit-logs", "server": "kit-logs", "component": "server", "service": "protomesh.interop.v1.InteropService", "method": "Echo", "code": "OK", "requestId": "req-42"} {
		if echo[key] != want {
			t.Errorf("log field %s = %#v, want %#v", key, echo[key], want)
		}
	}
	for _, key := range []string{"time", "durationMs", "pid"} {
		if _, ok := echo[key].(float64); !ok {
			t.Errorf("log field %s = %#v, want a number", key, echo[key])
		}
	}
	if peer, _ := echo["peer"].(string); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("log field peer = %#v, want 127.0.0.1:<port>", echo["peer"])
	}
	health := healthpb.NewHealthClient(plainConn(t, s.addr))
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	protomeshtestEventually(t, func() bool {
		for _, line := range s.logs.lines(t, "call") {
			if line["method"] == "Check" {
				return line["level"] == 20.0
			}
		}
		return false
	})
}

func protomeshtestEventually(t *testing.T, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOutboundCallsInheritRequestIDDeadlineAndCancellation(t *testing.T) {
	downstream := startServer(t, "kit-down")
	upstream := startServer(t, "kit-up")
	clientLogs := &syncBuffer{}
	next, err := protomesh.Dial("kit-down", protomesh.DialFallback(downstream.addr), protomesh.DialLogger(protomesh.NewLogger(clientLogs, "kit-up", "info")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close() })
	upstream.service.next = next
	client := interopv1.NewInteropServiceClient(plainConn(t, upstream.addr))

	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "chain-1"), time.Second)
	defer cancel()
	response, err := client.Hold(ctx, &interopv1.HoldRequest{HoldMs: 1, RelayTo: []string{"kit-down"}})
	if err != nil {
		t.Fatal(err)
	}
	up, down := response.GetHops()[0], response.GetHops()[1]
	if up.GetRequestId() != "chain-1" || down.GetRequestId() != "chain-1" {
		t.Fatalf("request ids %q then %q, want chain-1 on both hops", up.GetRequestId(), down.GetRequestId())
	}
	// The downstream budget is the upstream's remaining budget less the 10 ms margin.
	if down.GetRemainingMs() > up.GetRemainingMs()-10 || down.GetRemainingMs() < up.GetRemainingMs()-200 {
		t.Fatalf("remaining %d ms upstream, %d ms downstream: want downstream = upstream - 10 ms (less transit)", up.GetRemainingMs(), down.GetRemainingMs())
	}
	<-downstream.service.ended
	outbound := clientLogs.lines(t, "outbound call")
	if len(outbound) != 1 || outbound[0]["requestId"] != "chain-1" || outbound[0]["code"] != "OK" || outbound[0]["component"] != "client" || outbound[0]["target"] != downstream.addr {
		t.Fatalf("client log lines %v, want one OK line for chain-1", outbound)
	}

	// Cancelling the inbound call cancels its outbound call.
	cancelCtx, cancelCall := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancelCall)
	_, err = client.Hold(cancelCtx, &interopv1.HoldRequest{HoldMs: 5000, RelayTo: []string{"kit-down"}})
	if status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v, want CANCELLED", err)
	}
	select {
	case reason := <-downstream.service.ended:
		if reason != context.Canceled.Error() {
			t.Fatalf("the downstream hold ended with %q, want cancelled", reason)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the downstream hold did not end after its caller was cancelled")
	}

	// Outside any inbound call, a call without a deadline gets the default one.
	direct, err := protomesh.Dial(downstream.addr, protomesh.DialDefaultDeadline(300*time.Millisecond), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	held, err := interopv1.NewInteropServiceClient(direct).Hold(context.Background(), &interopv1.HoldRequest{HoldMs: 1})
	if err != nil || held.GetHops()[0].GetRemainingMs() > 300 || held.GetHops()[0].GetRemainingMs() < 200 {
		t.Fatalf("default deadline: %v %v, want about 300 ms remaining", held, err)
	}
}

func TestOutboundCallsReplaceAnUnusableRequestID(t *testing.T) {
	downstream := startServer(t, "kit-down")
	conn, err := protomesh.Dial(downstream.addr, protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "has spaces in it")
	held, err := interopv1.NewInteropServiceClient(conn).Hold(ctx, &interopv1.HoldRequest{HoldMs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if id := held.GetHops()[0].GetRequestId(); id == "has spaces in it" || len(id) != 36 {
		t.Fatalf("the server saw request id %q, want a new UUID in place of the unusable one", id)
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func fmtInt(n int) string { return strconv.Itoa(n) }
