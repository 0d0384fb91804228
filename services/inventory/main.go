// Command inventory serves shop.inventory.v1.InventoryService on the protomesh Go kit: stock
// levels and reservations in one SQLite file (INVENTORY_STORE_URL) shared by every replica on
// the machine.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
)

// Defaults of the inventory service.
const (
	DefaultPort     = 50053
	DefaultStoreURL = "sqlite:.data/inventory.sqlite"
	meshName        = "inventory"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

func run() error {
	settings, err := protomesh.LoadSettings(nil)
	if err != nil {
		return err
	}
	storeURL := os.Getenv("INVENTORY_STORE_URL")
	if storeURL == "" {
		storeURL = DefaultStoreURL
	}
	path, err := StorePath(storeURL)
	if err != nil {
		return err
	}
	logger := protomesh.NewLogger(os.Stdout, meshName, settings.LogLevel)
	// Traces when the standard OTEL_* variables point at a collector (none otherwise).
	tracing, err := protomesh.TracingFromEnvironment(meshName)
	if err != nil {
		return err
	}
	// After the drain, which has flushed the spans of the server's calls.
	defer shutdownTracing(tracing, logger)
	store, err := OpenStore(context.Background(), path)
	if err != nil {
		return err
	}
	defer store.Close()
	server := protomesh.NewServer(meshName, protomesh.WithSettings(settings), protomesh.WithAdminAddress(settings.AdminAddress),
		protomesh.WithLogger(logger), protomesh.WithTracing(tracing))
	draining := make(chan struct{})
	server.OnDraining(func() { close(draining) })
	inventoryv1.RegisterInventoryServiceServer(server, &inventoryService{store: store, logger: server.Logger().With("component", "inventory"), draining: draining})
	if _, err := server.Listen(settings.ListenAddress(DefaultPort)); err != nil {
		return err
	}
	return server.ServeUntilSignal(context.Background())
}

// shutdownTracing stops the trace exporter, giving what is still buffered a drain's grace to go out.
func shutdownTracing(tracing *protomesh.Tracing, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), protomesh.DefaultDrainGrace)
	defer cancel()
	if err := tracing.Shutdown(ctx); err != nil {
		logger.Warn("stopping the trace exporter failed", "component", "tracing", "err", err.Error())
	}
}
