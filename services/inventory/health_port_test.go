package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// buildInventory builds the program into a temporary directory and returns its path.
func buildInventory(t *testing.T) string {
	t.Helper()
	binary := filepath.Join(t.TempDir(), "inventory")
	build := exec.Command("go", "build", "-o", binary, "./services/inventory")
	build.Dir = protomeshtest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binary
}

// inventoryCommand runs binary on its own store with the mesh's variables cleared, then env.
func inventoryCommand(t *testing.T, binary string, env ...string) *exec.Cmd {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "PROTOMESH_CONTROL_PLANE=", "PROTOMESH_ADMIN_ADDRESS=", "PROTOMESH_LOG_LEVEL=warn", "PROTOMESH_MESH_CONFIG=",
		"PROTOMESH_TLS_CA_FILE=", "PROTOMESH_TLS_CERT_FILE=", "PROTOMESH_TLS_KEY_FILE=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=",
		"INVENTORY_STORE_URL=sqlite:"+filepath.Join(t.TempDir(), "inventory.sqlite"))
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// startInventory starts cmd, its output on the test's stderr and killed at cleanup; the channel
// receives what its Wait returns.
func startInventory(t *testing.T, cmd *exec.Cmd) <-chan error {
	t.Helper()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return exited
}

// drainInventory sends cmd SIGTERM and fails unless it exits 0 within 10 s.
func drainInventory(t *testing.T, cmd *exec.Cmd, exited <-chan error) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after the drain: %v, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the inventory did not exit after its drain")
	}
}

// The program as it is run: PROTOMESH_HEALTH_ADDRESS alone opens the plaintext health port
// (through WithSettings), which answers the inventory's health and none of its methods.
func TestHealthAddressFromTheEnvironmentServesTheInventorysHealthAlone(t *testing.T) {
	binary := buildInventory(t)
	healthAddr := "127.0.0.1:" + strconv.Itoa(protomeshtest.FreePort(t))
	cmd := inventoryCommand(t, binary, "PORT="+strconv.Itoa(protomeshtest.FreePort(t)), "PROTOMESH_HEALTH_ADDRESS="+healthAddr)
	exited := startInventory(t, cmd)
	conn, err := grpc.NewClient(healthAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	protomeshtest.Eventually(t, 10*time.Second, "SERVING on the health port", func() bool {
		response, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: "shop.inventory.v1.InventoryService"})
		return err == nil && response.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	_, err = inventoryv1.NewInventoryServiceClient(conn).GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: "sku-1001"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetStock on the health port: %v, want UNIMPLEMENTED", err)
	}
	drainInventory(t, cmd, exited)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Check on the health port after the exit: %v, want UNAVAILABLE", err)
	}
}

func TestBadHealthAddressIsRefusedNamingTheVariable(t *testing.T) {
	binary := buildInventory(t)
	cmd := inventoryCommand(t, binary, "PORT=0", "PROTOMESH_HEALTH_ADDRESS=8086")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("run: %v, want exit 1", err)
	}
	if want := `inventory: PROTOMESH_HEALTH_ADDRESS: must be host:port, e.g. 127.0.0.1:8086, got "8086"`; !strings.Contains(stderr.String(), want) {
		t.Fatalf("stderr %q, want %q", stderr.String(), want)
	}
}
