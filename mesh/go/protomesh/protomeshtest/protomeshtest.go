// Package protomeshtest starts the real TypeScript control plane and finds the tools the Go
// tests drive. A missing tool skips the test outside CI and fails it under CI (CI=true or 1).
package protomeshtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	registryv1 "github.com/protomesh/protomesh/generated/go/protomesh/registry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// IsCI reports whether the tests run under CI, where a missing tool is a failure.
func IsCI() bool {
	ci := os.Getenv("CI")
	return ci == "true" || ci == "1"
}

// RepoRoot is the repository's root (where go.mod is).
func RepoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
}

// RequireTool returns the path of a program (looked up in .tools/bin, then PATH); without it the
// test is skipped, saying why, or fails under CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	if path := filepath.Join(RepoRoot(t), ".tools", "bin", name); isExecutable(path) {
		return path
	}
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if IsCI() {
		t.Fatalf("%s is required (CI=%s)", name, os.Getenv("CI"))
	}
	t.Skipf("%s not found: skipping (install it, e.g. `make tools` for grpcurl)", name)
	return ""
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// FreePort returns a TCP port free on 127.0.0.1 now.
func FreePort(t testing.TB) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// ControlPlane is a running `protomesh control-plane` process.
type ControlPlane struct {
	Addr   string
	port   int
	config string
	env    []string
	// transport is how the test's own clients (Registry, the readiness check) reach it.
	transport credentials.TransportCredentials
	t         testing.TB
	cmd       *exec.Cmd
	exited    chan struct{}
}

// ControlPlaneOption configures [StartControlPlane].
type ControlPlaneOption func(*ControlPlane)

// WithEnv adds variables ("NAME=value") to the control plane's environment, e.g. its
// PROTOMESH_TLS_* files and PROTOMESH_CA_KEY_FILE for a control plane on mTLS.
func WithEnv(env ...string) ControlPlaneOption {
	return func(cp *ControlPlane) { cp.env = append(cp.env, env...) }
}

// WithClientTLS has the test's own clients of the control plane ([ControlPlane.Registry], the
// readiness check) call it over mTLS with a certificate and key from the mesh CA in caFile
// (PEM files), checking its certificate against the host they dial (127.0.0.1, an IP SAN of the
// control plane's certificate).
func WithClientTLS(caFile, certFile, keyFile string) ControlPlaneOption {
	return func(cp *ControlPlane) {
		certificate, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			cp.t.Fatal(err)
		}
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			cp.t.Fatal(err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			cp.t.Fatalf("%s holds no PEM certificate", caFile)
		}
		cp.transport = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{certificate}, RootCAs: roots})
	}
}

// StartControlPlane starts the TypeScript control plane (node dist/cli/protomesh.js control-plane)
// with meshYAML on a free port and waits for its "listening" line; it is stopped at cleanup.
func StartControlPlane(t testing.TB, meshYAML string, options ...ControlPlaneOption) *ControlPlane {
	t.Helper()
	RequireTool(t, "node")
	script := filepath.Join(RepoRoot(t), "dist", "cli", "protomesh.js")
	if _, err := os.Stat(script); err != nil {
		if IsCI() {
			t.Fatalf("%s is missing: build the TypeScript (tsc -p tsconfig.json)", script)
		}
		t.Skipf("%s is missing: skipping (build the TypeScript first)", script)
	}
	config := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(config, []byte(meshYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := &ControlPlane{port: FreePort(t), config: config, t: t, transport: insecure.NewCredentials()}
	for _, option := range options {
		option(cp)
	}
	cp.Addr = "127.0.0.1:" + strconv.Itoa(cp.port)
	cp.Start()
	t.Cleanup(cp.Stop)
	return cp
}

// Start (re)starts the process on the same port and waits until it listens.
func (cp *ControlPlane) Start() {
	t := cp.t
	t.Helper()
	script := filepath.Join(RepoRoot(t), "dist", "cli", "protomesh.js")
	cmd := exec.Command("node", script, "control-plane", cp.config)
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(cp.port), "HOST=127.0.0.1", "PROTOMESH_CONTROL_PLANE=", "PROTOMESH_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, cp.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cp.cmd, cp.exited = cmd, make(chan struct{})
	listening := make(chan struct{})
	go func() {
		defer close(cp.exited)
		scanner := bufio.NewScanner(stdout)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		isOpen := true
		for scanner.Scan() {
			if isOpen && strings.Contains(scanner.Text(), `listening"`) {
				close(listening)
				isOpen = false
			}
		}
		_ = cmd.Wait()
	}()
	// The "listening" line may be below the log level: a registry call that answers also says so.
	deadline := time.After(15 * time.Second)
	for {
		select {
		case <-listening:
			return
		case <-cp.exited:
			t.Fatal("the control plane exited before it listened")
		case <-deadline:
			t.Fatal("the control plane did not listen within 15 s")
		case <-time.After(50 * time.Millisecond):
			if cp.answers() {
				return
			}
		}
	}
}

func (cp *ControlPlane) answers() bool {
	conn, err := grpc.NewClient(cp.Addr, grpc.WithTransportCredentials(cp.transport))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = registryv1.NewRegistryServiceClient(conn).ListServices(ctx, &registryv1.ListServicesRequest{})
	return err == nil
}

// Stop ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (cp *ControlPlane) Stop() {
	if cp.cmd == nil || cp.cmd.Process == nil {
		return
	}
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.exited:
	case <-time.After(5 * time.Second):
		_ = cp.cmd.Process.Kill()
		<-cp.exited
	}
	cp.cmd = nil
}

// Registry returns a registry client of the control plane, closed at cleanup.
func (cp *ControlPlane) Registry(t testing.TB) registryv1.RegistryServiceClient {
	conn, err := grpc.NewClient(cp.Addr, grpc.WithTransportCredentials(cp.transport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return registryv1.NewRegistryServiceClient(conn)
}

// Endpoints returns "address:port" → health state name of a service's endpoints.
func (cp *ControlPlane) Endpoints(t testing.TB, service string) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	response, err := cp.Registry(t).ListServices(ctx, &registryv1.ListServicesRequest{Service: service})
	endpoints := map[string]string{}
	if err != nil {
		return endpoints
	}
	for _, s := range response.GetServices() {
		for _, e := range s.GetEndpoints() {
			endpoints[e.GetEndpointId()] = e.GetHealth().String()
		}
	}
	return endpoints
}

// Eventually polls condition every 20 ms until it holds or timeout passes (then fails with what).
func Eventually(t testing.TB, timeout time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
