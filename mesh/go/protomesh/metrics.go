package protomesh

import (
	"errors"
	"sync"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// callMetrics are go-grpc-prometheus' per-call metrics, as the TypeScript kit exports them
// (mesh/metrics.ts), so that dashboards and alerts written for grpc-go services read every kit's:
// grpc_server_started_total, grpc_server_handled_total (with grpc_code as grpc-go's
// codes.Code.String() spells it), grpc_server_msg_received_total, grpc_server_msg_sent_total,
// grpc_server_handling_seconds (Prometheus' default buckets), and the same five with grpc_client_;
// labelled grpc_type, grpc_service and grpc_method.
type callMetrics struct {
	server *grpcprom.ServerMetrics
	client *grpcprom.ClientMetrics
}

// meshMetrics are the process's call metrics, registered once in Prometheus' default registerer
// (where client_golang already puts the Go runtime's and the process's own), so that every server
// and client of the process counts into one registry and one scrape sees them all; a second
// server in the process reuses them instead of registering the names again.
var meshMetrics = sync.OnceValue(func() callMetrics {
	return callMetrics{
		server: registerOnce(grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())),
		client: registerOnce(grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram())),
	}
})

// registerOnce registers collector in the default registerer; when the application registered the
// same go-grpc-prometheus metrics there first, the kit counts into the application's.
func registerOnce[C prometheus.Collector](collector C) C {
	err := prometheus.Register(collector)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		panic("protomesh: registering the gRPC metrics: " + err.Error())
	}
	return collector
}
