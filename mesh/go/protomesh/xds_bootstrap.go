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
// process, and the process's zone as its locality. A program that starts a Go kit process passes it
// as that process's GRPC_XDS_BOOTSTRAP_CONFIG to have its channels in CSDS (xdsResolverFor).
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

// xdsResolverFor returns the "xds" resolver builder whose channels read the bootstrap Dial makes
// for controlPlane and zone, or nil when that is the process's own bootstrap (isProcessBootstrap):
// the channel then uses grpc-go's registered "xds" resolver and its default xDS client pool, the
// one grpc-go's CSDS reports (admin_services.go), with the node id that bootstrap names.
//
// Why the process's own: grpc-go reads GRPC_XDS_BOOTSTRAP and GRPC_XDS_BOOTSTRAP_CONFIG in package
// init of internal/envconfig, before main runs, and its default pool reads that copy once, at its
// first xDS client (xdsclient.DefaultPool, sync.OnceValues; only a GRPC_XDS_BOOTSTRAP file's
// contents are read then), so setting the variable from the program changes nothing. Its only
// setter, Pool.SetFallbackBootstrapConfig, is internal. A process is therefore in CSDS when it is
// started with the bootstrap of its control plane (XDSBootstrap, set by whoever starts it).
//
// Any other bootstrap is handed to its channels the way grpc-go offers:
// xds.NewXDSResolverWithConfigForTesting makes a resolver builder over an xDS client pool of its
// own with that bootstrap, passed to the channel with grpc.WithResolvers. Its "for testing" note
// warns that CSDS does not see those clients.
func xdsResolverFor(controlPlane, zone string) (resolver.Builder, error) {
	if isProcessBootstrap(controlPlane, zone) {
		return nil, nil
	}
	bootstrap := XDSBootstrap(controlPlane, zone)
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

// processBootstrap is what the kit reads of the process's own bootstrap: the server_uri of its first
// xDS server (the one grpc-go's default authority uses, gRFC A27) and its node's zone.
type processBootstrap struct {
	XDSServers []struct {
		ServerURI string `json:"server_uri"`
	} `json:"xds_servers"`
	Node struct {
		Locality struct {
			Zone string `json:"zone"`
		} `json:"locality"`
	} `json:"node"`
}

// readProcessBootstrap reads the bootstrap grpc-go's default pool reads, with grpc-go's precedence
// (the GRPC_XDS_BOOTSTRAP file, else GRPC_XDS_BOOTSTRAP_CONFIG), once, as grpc-go does. A missing
// or unreadable one is none: grpc-go reports it to the channels that use it.
var readProcessBootstrap = sync.OnceValue(func() processBootstrap {
	var contents []byte
	if name := os.Getenv("GRPC_XDS_BOOTSTRAP"); name != "" {
		contents, _ = os.ReadFile(name)
	} else {
		contents = []byte(os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG"))
	}
	var bootstrap processBootstrap
	if json.Unmarshal(contents, &bootstrap) != nil {
		return processBootstrap{}
	}
	return bootstrap
})

// isProcessBootstrap reports whether the process's own bootstrap says what Dial's would: its first
// xDS server is controlPlane and its zone is zone.
func isProcessBootstrap(controlPlane, zone string) bool {
	bootstrap := readProcessBootstrap()
	return len(bootstrap.XDSServers) > 0 && bootstrap.XDSServers[0].ServerURI == controlPlane &&
		bootstrap.Node.Locality.Zone == zone
}
