package protomesh_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Prometheus metrics (metrics.go) on the admin port (admin.go): real calls through a real kit
// server and client, scraped over HTTP as Prometheus does, the exposition checked by Prometheus'
// own promtool (Debian's prometheus package, `make promtool`). The metrics are the process's, so
// the tests assert what their own calls added.

const (
	promtool       = "/usr/bin/promtool"
	interopService = "protomesh.interop.v1.InteropService"
)

// answeringService answers Echo by its payload's text: "missing" NOT_FOUND, "broken" a raw error
// (which the kit's guard makes INTERNAL), anything else OK.
type answeringService struct {
	interopv1.UnimplementedInteropServiceServer
}

func (answeringService) Echo(_ context.Context, req *interopv1.EchoRequest) (*interopv1.EchoResponse, error) {
	switch req.GetPayload().GetText() {
	case "missing":
		return nil, status.Error(codes.NotFound, "payload: no such thing")
	case "broken":
		return nil, errors.New("the store is gone")
	}
	return &interopv1.EchoResponse{Payload: req.GetPayload(), Language: "go"}, nil
}

type meteredServer struct {
	server *protomesh.Server
	client interopv1.InteropServiceClient
	admin  string // "http://host:port"
}

// startMeteredServer starts a kit server of answeringService with an admin port on 127.0.0.1:0
// and dials it with a metered kit client; both closed at cleanup.
func startMeteredServer(t *testing.T, name string) *meteredServer {
	t.Helper()
	server := protomesh.NewServer(name, protomesh.WithLogger(protomesh.NewLogger(io.Discard, name, "info")),
		protomesh.WithDrainGrace(2*time.Second), protomesh.WithAdminAddress("127.0.0.1:0"))
	interopv1.RegisterInteropServiceServer(server, answeringService{})
	conn, err := protomesh.Dial(listenOnLoopback(t, server), protomesh.DialMetrics(), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &meteredServer{server: server, client: interopv1.NewInteropServiceClient(conn), admin: "http://" + server.AdminAddr().String()}
}

// echo makes one Echo call with text as its payload and returns its code.
func (m *meteredServer) echo(t *testing.T, text string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := m.client.Echo(ctx, &interopv1.EchoRequest{Payload: &interopv1.Payload{Text: text}})
	return status.Code(err)
}

type scraped struct {
	code        int
	header      http.Header
	body        []byte
	families    map[string]*dto.MetricFamily
	contentType string
}

// scrape requests path of the admin port with method, as Prometheus does (text exposition).
func scrape(t *testing.T, admin, method, path string) scraped {
	t.Helper()
	request, err := http.NewRequest(method, admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	response, err := (&http.Client{Timeout: 5 * time.Second}).Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	s := scraped{code: response.StatusCode, header: response.Header, body: body, contentType: response.Header.Get("Content-Type")}
	if response.StatusCode == http.StatusOK && method == http.MethodGet {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if s.families, err = parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatalf("the exposition does not parse: %v\n%s", err, body)
		}
	}
	return s
}

// sample is the value of the series name{labels} (a histogram's by its _count or
// _bucket{le=...} name); 0 when the series is not there (yet).
func (s scraped) sample(name string, labels map[string]string) float64 {
	family, part := s.families[name], ""
	for _, suffix := range []string{"_count", "_bucket"} {
		if trimmed, ok := strings.CutSuffix(name, suffix); family == nil && ok {
			family, part = s.families[trimmed], suffix
		}
	}
	if family == nil {
		return 0
	}
	for _, metric := range family.GetMetric() {
		if !hasLabels(metric, labels) {
			continue
		}
		switch {
		case part == "_count":
			return float64(metric.GetHistogram().GetSampleCount())
		case part == "_bucket":
			for _, bucket := range metric.GetHistogram().GetBucket() {
				if strconv.FormatFloat(bucket.GetUpperBound(), 'g', -1, 64) == labels["le"] {
					return float64(bucket.GetCumulativeCount())
				}
			}
			return 0
		case metric.GetCounter() != nil:
			return metric.GetCounter().GetValue()
		case metric.GetGauge() != nil:
			return metric.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabels(metric *dto.Metric, labels map[string]string) bool {
	found := map[string]string{}
	for _, pair := range metric.GetLabel() {
		found[pair.GetName()] = pair.GetValue()
	}
	for name, value := range labels {
		if name != "le" && found[name] != value {
			return false
		}
	}
	return true
}

// withLabel returns labels plus name=value.
func withLabel(labels map[string]string, name, value string) map[string]string {
	copied := map[string]string{name: value}
	for k, v := range labels {
		copied[k] = v
	}
	return copied
}

func TestMetricsCountEachSidesUnaryCallsByMethodAndCode(t *testing.T) {
	m := startMeteredServer(t, "kit-metrics")
	before := scrape(t, m.admin, http.MethodGet, "/metrics")
	for _, tc := range []struct {
		text string
		want codes.Code
	}{{"a", codes.OK}, {"b", codes.OK}, {"c", codes.OK}, {"missing", codes.NotFound}, {"broken", codes.Internal}} {
		if got := m.echo(t, tc.text); got != tc.want {
			t.Fatalf("Echo(%q): %v, want %v", tc.text, got, tc.want)
		}
	}
	after := scrape(t, m.admin, http.MethodGet, "/metrics")
	if after.code != http.StatusOK || !strings.HasPrefix(after.contentType, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %d %q, want 200 and the text exposition", after.code, after.contentType)
	}
	added := func(name string, labels map[string]string) float64 {
		return after.sample(name, labels) - before.sample(name, labels)
	}
	unary := map[string]string{"grpc_type": "unary", "grpc_service": interopService, "grpc_method": "Echo"}
	for _, side := range []string{"server", "client"} {
		for _, tc := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"grpc_" + side + "_started_total", unary, 5},
			{"grpc_" + side + "_handled_total", withLabel(unary, "grpc_code", "OK"), 3},
			{"grpc_" + side + "_handled_total", withLabel(unary, "grpc_code", "NotFound"), 1},
			// The raw error counts as the INTERNAL its caller got, as in the TypeScript kit.
			{"grpc_" + side + "_handled_total", withLabel(unary, "grpc_code", "Internal"), 1},
			{"grpc_" + side + "_handled_total", withLabel(unary, "grpc_code", "Unknown"), 0},
			{"grpc_" + side + "_handling_seconds_count", unary, 5},
			{"grpc_" + side + "_handling_seconds_bucket", withLabel(unary, "le", "+Inf"), 5},
			{"grpc_" + side + "_handling_seconds_bucket", withLabel(unary, "le", "10"), 5},
		} {
			if got := added(tc.name, tc.labels); got != tc.want {
				t.Errorf("%s%v: %v more, want %v", tc.name, tc.labels, got, tc.want)
			}
		}
		buckets := after.families["grpc_"+side+"_handling_seconds"].GetMetric()[0].GetHistogram().GetBucket()
		var bounds []float64
		for _, bucket := range buckets {
			bounds = append(bounds, bucket.GetUpperBound())
		}
		if want := append(slices.Clone(prometheus.DefBuckets), math.Inf(1)); !slices.Equal(bounds, want) {
			t.Errorf("grpc_%s_handling_seconds buckets %v, want Prometheus' default %v", side, bounds, want)
		}
	}
	// Every request a message in; a response out for each OK call only.
	for name, want := range map[string]float64{"grpc_server_msg_received_total": 5, "grpc_server_msg_sent_total": 3, "grpc_client_msg_sent_total": 5, "grpc_client_msg_received_total": 3} {
		if got := added(name, unary); got != want {
			t.Errorf("%s%v: %v more, want %v", name, unary, got, want)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total"} {
		if after.families[name] == nil {
			t.Errorf("no %s among the Go runtime's and the process's metrics", name)
		}
	}
}

func TestEveryAdminPortOfAProcessServesItsOneRegistry(t *testing.T) {
	a := startMeteredServer(t, "kit-metrics-a")
	b := startMeteredServer(t, "kit-metrics-b")
	labels := map[string]string{"grpc_type": "unary", "grpc_service": interopService, "grpc_method": "Echo", "grpc_code": "OK"}
	before := scrape(t, a.admin, http.MethodGet, "/metrics").sample("grpc_server_handled_total", labels)
	if a.echo(t, "a") != codes.OK || b.echo(t, "b") != codes.OK {
		t.Fatal("Echo failed")
	}
	for _, admin := range []string{a.admin, b.admin} {
		if got := scrape(t, admin, http.MethodGet, "/metrics").sample("grpc_server_handled_total", labels) - before; got != 2 {
			t.Errorf("%s: %v more OK calls, want both servers' 2", admin, got)
		}
	}
}

func TestAdminPortServesOnlyGETAndHEADOfMetrics(t *testing.T) {
	m := startMeteredServer(t, "kit-admin")
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/metrics/x", http.StatusNotFound},
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodHead, "/metrics", http.StatusOK},
	} {
		got := scrape(t, m.admin, tc.method, tc.path)
		if got.code != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got.code, tc.want)
		}
		if tc.want == http.StatusMethodNotAllowed && got.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want \"GET, HEAD\"", tc.method, tc.path, got.header.Get("Allow"))
		}
	}
}

func TestAdminPortClosesWhenTheServerHasDrained(t *testing.T) {
	plain := startServer(t, "kit-no-admin")
	if addr := plain.server.AdminAddr(); addr != nil {
		t.Fatalf("AdminAddr without WithAdminAddress: %v, want nil", addr)
	}
	m := startMeteredServer(t, "kit-admin-drain")
	adminAddr := m.server.AdminAddr().String()
	m.server.Drain()
	if conn, err := net.DialTimeout("tcp", adminAddr, time.Second); err == nil {
		_ = conn.Close()
		t.Fatalf("the admin port %s still accepts connections after the drain", adminAddr)
	}
}

func TestListenRefusesAnAdminAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	server := protomesh.NewServer("kit-admin-taken", protomesh.WithLogger(protomesh.NewLogger(io.Discard, "", "info")), protomesh.WithAdminAddress(taken.Addr().String()))
	t.Cleanup(server.Drain)
	if _, err := server.Listen("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "admin port") {
		t.Fatalf("Listen with the admin address in use: %v, want an error naming the admin port", err)
	}
	if server.Addr() != nil {
		t.Fatalf("after the refused Listen the server is bound to %v, want nothing", server.Addr())
	}
}

func TestMetricsPassPromtoolCheckMetrics(t *testing.T) {
	if _, err := os.Stat(promtool); err != nil {
		reason := "promtool is not installed at " + promtool + ": run `make promtool` (Debian's prometheus package)"
		if protomeshtest.IsCI() {
			t.Fatalf("%s (CI=%s: a missing tool fails the run)", reason, os.Getenv("CI"))
		}
		t.Skip(reason)
	}
	m := startMeteredServer(t, "kit-promtool")
	for _, text := range []string{"a", "missing", "broken"} {
		m.echo(t, text)
	}
	body := scrape(t, m.admin, http.MethodGet, "/metrics").body
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := exec.CommandContext(ctx, promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	output, err := check.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, output)
	}
	if findings := strings.TrimSpace(string(output)); findings != "" {
		t.Fatalf("promtool check metrics found:\n%s", findings)
	}
}
