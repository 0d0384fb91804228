package protomesh_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	registryv1 "github.com/protomesh/protomesh/generated/go/protomesh/registry/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
)

// A short lease, so that renewals and the control plane's warm-up (one lease TTL) take little time.
const testMesh = "lease_ttl_ms: 600\n"

func TestServerRegistersRenewsAndRegistersAgainAfterARestart(t *testing.T) {
	cp := protomeshtest.StartControlPlane(t, testMesh)
	s := startServer(t, "kit-lease", protomesh.WithControlPlane(cp.Addr))
	healthy := func() bool { return cp.Endpoints(t, "kit-lease")[s.addr] == "HEALTH_STATE_HEALTHY" }
	protomeshtest.Eventually(t, 5*time.Second, "registered and HEALTHY", healthy)
	// Three TTLs later it is still there: the keep-alives renew the lease.
	time.Sleep(1800 * time.Millisecond)
	if !healthy() {
		t.Fatalf("after 3 lease TTLs: %v, want %s HEALTHY", cp.Endpoints(t, "kit-lease"), s.addr)
	}
	cp.Stop()
	cp.Start()
	protomeshtest.Eventually(t, 8*time.Second, "registered again with the restarted control plane", healthy)
	s.server.Drain()
	protomeshtest.Eventually(t, 3*time.Second, "deregistered on drain", func() bool { _, ok := cp.Endpoints(t, "kit-lease")[s.addr]; return !ok })
}

func TestDialByNameBalancesOverReplicasThroughTheControlPlane(t *testing.T) {
	cp := protomeshtest.StartControlPlane(t, testMesh)
	a := startServer(t, "kit-echo", protomesh.WithControlPlane(cp.Addr))
	b := startServer(t, "kit-echo", protomesh.WithControlPlane(cp.Addr))
	protomeshtest.Eventually(t, 5*time.Second, "both replicas HEALTHY", func() bool {
		endpoints := cp.Endpoints(t, "kit-echo")
		return endpoints[a.addr] == "HEALTH_STATE_HEALTHY" && endpoints[b.addr] == "HEALTH_STATE_HEALTHY"
	})
	conn, err := protomesh.Dial("kit-echo", protomesh.DialControlPlane(cp.Addr), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if target := conn.Target(); target != "xds:///kit-echo" {
		t.Fatalf("target %q, want xds:///kit-echo", target)
	}
	client := interopv1.NewInteropServiceClient(conn)
	seen := map[string]int{}
	protomeshtest.Eventually(t, 8*time.Second, "calls answered by both replicas", func() bool {
		response, err := client.Echo(context.Background(), &interopv1.EchoRequest{})
		if err == nil {
			seen[response.GetEndpoint()]++
		}
		return seen[a.addr] > 0 && seen[b.addr] > 0
	})
}

func TestSIGTERMDrainsFinishesInFlightCallsAndLeavesTheRegistry(t *testing.T) {
	cp := protomeshtest.StartControlPlane(t, testMesh)
	binary := filepath.Join(t.TempDir(), "interop")
	build := exec.Command("go", "build", "-o", binary, "./test/interop/go")
	build.Dir = protomeshtest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := protomeshtest.FreePort(t)
	endpoint := "127.0.0.1:" + itoa(port)
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(), "PROTOMESH_CONTROL_PLANE="+cp.Addr, "PORT="+itoa(port), "INTEROP_SERVICE=kit-drain")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	protomeshtest.Eventually(t, 5*time.Second, "the subprocess registered and HEALTHY", func() bool {
		return cp.Endpoints(t, "kit-drain")[endpoint] == "HEALTH_STATE_HEALTHY"
	})
	conn, err := protomesh.Dial(endpoint, protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	result := make(chan error, 1)
	go func() {
		_, err := interopv1.NewInteropServiceClient(conn).Hold(context.Background(), &interopv1.HoldRequest{HoldMs: 800})
		result <- err
	}()
	protomeshtest.Eventually(t, 2*time.Second, "the call in flight", func() bool { return strings.Contains(logs.String(), "registered") })
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatalf("the call in flight during the drain: %v, want OK", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after the drain: %v, want 0", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subprocess did not exit after its drain")
	}
	if _, ok := cp.Endpoints(t, "kit-drain")[endpoint]; ok {
		t.Fatalf("after the drain the registry still lists %s", endpoint)
	}
}

func itoa(n int) string { return fmtInt(n) }

func TestServerRegistersItsAdminPortForTheDashboard(t *testing.T) {
	cp := protomeshtest.StartControlPlane(t, testMesh)
	s := startServer(t, "kit-admin", protomesh.WithControlPlane(cp.Addr), protomesh.WithAdminAddress("127.0.0.1:0"))
	want := strings.TrimPrefix(s.server.AdminAddr().String(), "127.0.0.1:")
	registered := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		response, err := cp.Registry(t).ListServices(ctx, &registryv1.ListServicesRequest{Service: "kit-admin"})
		if err != nil {
			return ""
		}
		for _, service := range response.GetServices() {
			for _, endpoint := range service.GetEndpoints() {
				return endpoint.GetEndpoint().GetMetadata()[protomesh.AdminPortMetadata]
			}
		}
		return ""
	}
	protomeshtest.Eventually(t, 5*time.Second, "registered with its admin port", func() bool { return registered() == want })
}
