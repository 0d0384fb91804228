package main

import (
	"strconv"
	"testing"
	"time"

	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The program as it is run: OTEL_EXPORTER_OTLP_ENDPOINT alone turns its traces on, and a SIGTERM
// sends the spans still buffered before it exits. The batch's schedule delay is an hour, so that
// only the drain's flush can have sent them.
func TestSIGTERMExportsTheSpansOfTheCallsServed(t *testing.T) {
	receiver := protomeshtest.StartOTLPReceiver(t)
	binary := buildInventory(t)
	port := protomeshtest.FreePort(t)
	// os/exec keeps the last of a variable given twice: OTEL_EXPORTER_OTLP_ENDPOINT is the receiver's.
	cmd := inventoryCommand(t, binary, "PORT="+strconv.Itoa(port),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+receiver.URL, "OTEL_SDK_DISABLED=", "OTEL_TRACES_EXPORTER=",
		"OTEL_SERVICE_NAME=", "OTEL_TRACES_SAMPLER=", "OTEL_EXPORTER_OTLP_PROTOCOL=", "OTEL_BSP_SCHEDULE_DELAY=3600000")
	exited := startInventory(t, cmd)
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := inventoryv1.NewInventoryServiceClient(conn)
	protomeshtest.Eventually(t, 10*time.Second, "a GetStock answered", func() bool {
		_, err := client.GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: "sku-1001"})
		return err == nil
	})
	if spans := receiver.Spans(); len(spans) != 0 {
		t.Fatalf("%d spans exported before the drain, want none within the hour's schedule delay", len(spans))
	}
	drainInventory(t, cmd, exited)
	spans := receiver.Spans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the one GetStock's server span", len(spans))
	}
	if span := spans[0]; span.Name != "shop.inventory.v1.InventoryService/GetStock" || span.Kind != tracepb.Span_SPAN_KIND_SERVER || span.Service != "inventory" {
		t.Fatalf("%v, want the SERVER span of shop.inventory.v1.InventoryService/GetStock of service.name inventory", span)
	}
}
