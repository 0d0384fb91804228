package protomesh

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
)

// XDSBootstrap is the xDS bootstrap (gRFC A27) of a client of the protomesh control plane at
// controlPlane, the shape of mesh/xds-bootstrap.ts: one insecure xDS server, a node id unique to this
// process, and the process's zone as its locality.
func XDSBootstrap(controlPlane, zone string) []byte {
	host, _ := os.Hostname()
	bootstrap, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      controlPlane,
			"channel_creds":   []any{map[string]string{"type": "insecure"}},
			"server_features": []string{},
		}},
		"node": map[string]any{
			"id":       fmt.Sprintf("protomesh~%s~%d", host, os.Getpid()),
			"locality": map[string]string{"zone": zone},
		},
	})
	return bootstrap
}

// xdsResolvers holds one xDS resolver builder per bootstrap, so that every channel to one control
// plane shares its xDS client pool, while a process (a test) may still use several control planes.
var xdsResolvers sync.Map // bootstrap JSON → resolver.Builder

// xdsResolverFor returns the "xds" resolver builder whose channels read the given bootstrap.
//
// Why not GRPC_XDS_BOOTSTRAP_CONFIG: grpc-go reads it in package init of internal/envconfig, before
// main runs, and its default xDS client pool reads that copy once (sync.OnceValues), so setting the
// variable from the program changes nothing. A bootstrap handed to one channel is what grpc-go
// offers for that: xds.NewXDSResolverWithConfigForTesting makes a resolver builder over an xDS
// client pool of its own with that bootstrap, passed to the channel with grpc.WithResolvers. (Its
// "for testing" note warns that CSDS does not see those clients: the CSDS of a kit server with
// an admin address (admin_services.go) answers, but without these channels' resources.)
func xdsResolverFor(bootstrap []byte) (resolver.Builder, error) {
	if builder, ok := xdsResolvers.Load(string(bootstrap)); ok {
		return builder.(resolver.Builder), nil
	}
	builder, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		return nil, fmt.Errorf("xds bootstrap: %w", err)
	}
	actual, _ := xdsResolvers.LoadOrStore(string(bootstrap), builder)
	return actual.(resolver.Builder), nil
}
