package protomesh

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/xds"
)

// XDSBootstrap is the xDS bootstrap (gRFC A27) of a client of the protomesh control plane at
// controlPlane, the shape of mesh/xds-bootstrap.ts: one xDS server, a node id unique to this
// process, and the process's zone as its locality. The xDS server is reached in plaintext, or with
// tls over mTLS with the workload's files as gRFC A65's "tls" channel credentials (grpc-go's file
// watcher reads them every tls.RefreshInterval, so that a renewed certificate serves the next
// handshake); grpc-go then checks the control plane's certificate against the host of
// controlPlane, which its certificate names as a DNS or IP SAN. A program that starts a Go kit
// process passes it as that process's GRPC_XDS_BOOTSTRAP_CONFIG to have its channels in CSDS
// (xdsResolverFor).
func XDSBootstrap(controlPlane, zone string, tls *TLSFiles) []byte {
	host, _ := os.Hostname()
	creds := map[string]any{"type": "insecure"}
	if tls != nil {
		refresh := tls.refreshInterval()
		creds = map[string]any{"type": "tls", "config": map[string]string{
			"ca_certificate_file": tls.CAFile,
			"certificate_file":    tls.CertFile,
			"private_key_file":    tls.KeyFile,
			// google.protobuf.Duration in its JSON form, as the file watcher's config takes it.
			"refresh_interval": strconv.FormatFloat(refresh.Seconds(), 'f', -1, 64) + "s",
		}}
	}
	bootstrap, _ := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      controlPlane,
			"channel_creds":   []any{creds},
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
// for controlPlane, zone and tls, or nil when that is the process's own bootstrap (isProcessBootstrap):
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
func xdsResolverFor(controlPlane, zone string, tls *TLSFiles) (resolver.Builder, error) {
	if isProcessBootstrap(controlPlane, zone, tls != nil) {
		return nil, nil
	}
	bootstrap := XDSBootstrap(controlPlane, zone, tls)
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

// processBootstrap is what the kit reads of the process's own bootstrap: the server_uri and the
// channel credentials of its first xDS server (the one grpc-go's default authority uses, gRFC A27)
// and its node's zone.
type processBootstrap struct {
	XDSServers []struct {
		ServerURI    string `json:"server_uri"`
		ChannelCreds []struct {
			Type string `json:"type"`
		} `json:"channel_creds"`
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
// xDS server is controlPlane, reached over TLS when isTLS (grpc-go uses the first channel
// credentials it supports), and its zone is zone.
func isProcessBootstrap(controlPlane, zone string, isTLS bool) bool {
	bootstrap := readProcessBootstrap()
	if len(bootstrap.XDSServers) == 0 || len(bootstrap.XDSServers[0].ChannelCreds) == 0 {
		return false
	}
	server := bootstrap.XDSServers[0]
	return server.ServerURI == controlPlane && (server.ChannelCreds[0].Type == "tls") == isTLS &&
		bootstrap.Node.Locality.Zone == zone
}
