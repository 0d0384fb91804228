package protomesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminReadHeaderTimeout bounds how long a connection to the admin port may take to send its
// request headers, so that idle or slow clients cannot hold it open (net/http's Slowloris guard).
const adminReadHeaderTimeout = 10 * time.Second

// adminServer is a process's admin HTTP port (mesh/admin.ts): GET /metrics (and HEAD) is the
// Prometheus text exposition of the default gatherer, where the kit's metrics and the Go runtime's
// go; any other path is 404 and any other method 405. Plain HTTP on its own port, apart from the
// gRPC port, as Prometheus and Kubernetes expect; bind it to loopback unless the scraper runs
// elsewhere.
type adminServer struct {
	http     *http.Server
	listener net.Listener
}

// listenAdmin binds address ("host:port"; port 0 picks a free one) and serves the admin port in
// the background until close.
func listenAdmin(address string, logger *slog.Logger) (*adminServer, error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("admin port: listen on %s: %w", address, err)
	}
	mux := http.NewServeMux()
	// A GET pattern matches HEAD too; ServeMux answers another method 405 (with Allow) and another path 404.
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.DefaultGatherer, promhttp.HandlerOpts{ErrorLog: scrapeErrorLog{logger}}))
	a := &adminServer{
		http:     &http.Server{Handler: mux, ReadHeaderTimeout: adminReadHeaderTimeout},
		listener: listener,
	}
	go func() {
		if err := a.http.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin port stopped serving", "err", err.Error())
		}
	}()
	logger.Info("admin port listening (/metrics)", "address", address, "port", listener.Addr().(*net.TCPAddr).Port)
	return a, nil
}

// addr is the bound address.
func (a *adminServer) addr() net.Addr { return a.listener.Addr() }

// close stops listening and closes open connections, scrapes in progress included.
func (a *adminServer) close() { _ = a.http.Close() }

// scrapeErrorLog logs what promhttp could not gather (it answers the scrape 500).
type scrapeErrorLog struct{ logger *slog.Logger }

func (l scrapeErrorLog) Println(v ...any) {
	l.logger.Error("metrics scrape failed", "err", fmt.Sprint(v...))
}
