package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startReplica serves the inventory over the store at path on 127.0.0.1:0, drained at cleanup.
func startReplica(t *testing.T, path string) inventoryv1.InventoryServiceClient {
	t.Helper()
	store, err := OpenStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	server := protomesh.NewServer("inventory", protomesh.WithLogger(protomesh.NewLogger(io.Discard, "inventory", "info")), protomesh.WithDrainGrace(time.Second))
	draining := make(chan struct{})
	server.OnDraining(func() { close(draining) })
	inventoryv1.RegisterInventoryServiceServer(server, &inventoryService{store: store, logger: server.Logger(), draining: draining})
	addr, err := server.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		server.Drain()
		_ = store.Close()
	})
	return inventoryv1.NewInventoryServiceClient(conn)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func storePath(t *testing.T) string { return filepath.Join(t.TempDir(), "nested", "inventory.sqlite") }

func items(pairs ...any) []*inventoryv1.ReservationItem {
	var list []*inventoryv1.ReservationItem
	for i := 0; i < len(pairs); i += 2 {
		list = append(list, &inventoryv1.ReservationItem{ProductId: pairs[i].(string), Quantity: int32(pairs[i+1].(int))})
	}
	return list
}

func wantStatus(t *testing.T, err error, code codes.Code, detailsPrefix string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.HasPrefix(st.Message(), detailsPrefix) {
		t.Fatalf("got %s %q, want %s %q…", protomesh.CodeName(st.Code()), st.Message(), protomesh.CodeName(code), detailsPrefix)
	}
}

func TestSeedsTheCatalogProductsWithStock(t *testing.T) {
	client := startReplica(t, storePath(t))
	for _, id := range []string{"sku-1001", "sku-1015"} {
		response, err := client.GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: id})
		if err != nil || response.GetStock().GetAvailable() != SeedUnits || response.GetStock().GetReserved() != 0 {
			t.Fatalf("GetStock(%s): %v %v, want %d available", id, response, err, SeedUnits)
		}
	}
	_, err := client.GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: "sku-9999"})
	wantStatus(t, err, codes.NotFound, "product_id: ")
}

func TestReservesAllOrNothingAndIdempotentlyPerOrder(t *testing.T) {
	client := startReplica(t, storePath(t))
	first, err := client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-1", Items: items("sku-1001", 3, "sku-1002", 2)})
	if err != nil || first.GetStock()[0].GetAvailable() != 997 || first.GetStock()[0].GetReserved() != 3 {
		t.Fatalf("ReserveStock: %v %v", first, err)
	}
	again, err := client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-1", Items: items("sku-1002", 2, "sku-1001", 3)})
	if err != nil || again.GetReservationId() != first.GetReservationId() || again.GetStock()[1].GetAvailable() != 997 {
		t.Fatalf("the same order again: %v %v, want reservation %s and nothing more reserved", again, err, first.GetReservationId())
	}
	_, err = client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-1", Items: items("sku-1001", 4)})
	wantStatus(t, err, codes.FailedPrecondition, "order_id: ")
	_, err = client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-2", Items: items("sku-1003", 1, "sku-1001", 998)})
	wantStatus(t, err, codes.FailedPrecondition, "items[1].product_id: not enough stock of \"sku-1001\": available 997, requested 998")
	_, err = client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-3", Items: items("sku-1003", 1, "sku-0000", 1)})
	wantStatus(t, err, codes.NotFound, "items[1].product_id: ")
	// Neither failed reservation held anything.
	stock, _ := client.GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: "sku-1003"})
	if stock.GetStock().GetAvailable() != SeedUnits {
		t.Fatalf("sku-1003 after failed reservations: %v, want all %d available", stock, SeedUnits)
	}
}

func TestHoldsAReleasedOrdersStockAgainWhenTheOrderIsPlacedAgain(t *testing.T) {
	client := startReplica(t, storePath(t))
	first, err := client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-again", Items: items("sku-1004", 4)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ReleaseStock(callCtx(t), &inventoryv1.ReleaseStockRequest{ReservationId: first.GetReservationId()}); err != nil {
		t.Fatal(err)
	}
	again, err := client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-again", Items: items("sku-1004", 4)})
	if err != nil || again.GetReservationId() != first.GetReservationId() || again.GetStock()[0].GetAvailable() != SeedUnits-4 || again.GetStock()[0].GetReserved() != 4 {
		t.Fatalf("the released order placed again: %v %v, want reservation %s holding 4 again", again, err, first.GetReservationId())
	}
	repeat, err := client.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "o-again", Items: items("sku-1004", 4)})
	if err != nil || repeat.GetStock()[0].GetAvailable() != SeedUnits-4 {
		t.Fatalf("once held again, a repeat reserves nothing more: %v %v", repeat, err)
	}
}

func TestRefusesBadInputNamingTheField(t *testing.T) {
	client := startReplica(t, storePath(t))
	for _, tc := range []struct {
		req   *inventoryv1.ReserveStockRequest
		field string
	}{
		{&inventoryv1.ReserveStockRequest{Items: items("sku-1001", 1)}, "order_id: "},
		{&inventoryv1.ReserveStockRequest{OrderId: "o"}, "items: "},
		{&inventoryv1.ReserveStockRequest{OrderId: "o", Items: items("sku-1001", 0)}, "items[0].quantity: "},
		{&inventoryv1.ReserveStockRequest{OrderId: "o", Items: items("sku-1001", 1001)}, "items[0].quantity: "},
		{&inventoryv1.ReserveStockRequest{OrderId: "o", Items: items("sku-1001", 1, "sku-1001", 2)}, "items[1].product_id: "},
		{&inventoryv1.ReserveStockRequest{OrderId: "o", Items: items("", 1)}, "items[0].product_id: "},
	} {
		_, err := client.ReserveStock(callCtx(t), tc.req)
		wantStatus(t, err, codes.InvalidArgument, tc.field)
	}
	tooMany := &inventoryv1.ReserveStockRequest{OrderId: "o"}
	for i := 0; i <= MaxItems; i++ {
		tooMany.Items = append(tooMany.Items, &inventoryv1.ReservationItem{ProductId: fmt.Sprintf("sku-%d", i), Quantity: 1})
	}
	_, err := client.ReserveStock(callCtx(t), tooMany)
	wantStatus(t, err, codes.InvalidArgument, "items: at most 100 items, got 101")
	_, err = client.GetStock(callCtx(t), &inventoryv1.GetStockRequest{})
	wantStatus(t, err, codes.InvalidArgument, "product_id: ")
	_, err = client.ReleaseStock(callCtx(t), &inventoryv1.ReleaseStockRequest{})
	wantStatus(t, err, codes.InvalidArgument, "reservation_id: ")
	_, err = client.ReleaseStock(callCtx(t), &inventoryv1.ReleaseStockRequest{ReservationId: "res-none"})
	wantStatus(t, err, codes.NotFound, "reservation_id: ")
}

func TestReplicasShareOneStore(t *testing.T) {
	path := storePath(t)
	a, b := startReplica(t, path), startReplica(t, path)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := b.WatchStock(watchCtx, &inventoryv1.WatchStockRequest{ProductIds: []string{"sku-1005"}})
	if err != nil {
		t.Fatal(err)
	}
	initial, err := watch.Recv()
	if err != nil || initial.GetStock().GetAvailable() != SeedUnits {
		t.Fatalf("the watch's first message: %v %v, want the current level", initial, err)
	}
	reservation, err := a.ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "shared", Items: items("sku-1005", 7)})
	if err != nil {
		t.Fatal(err)
	}
	change, err := watch.Recv()
	if err != nil || change.GetStock().GetAvailable() != SeedUnits-7 || change.GetStock().GetReserved() != 7 {
		t.Fatalf("a watch on replica b after a reservation on a: %v %v", change, err)
	}
	released, err := b.ReleaseStock(callCtx(t), &inventoryv1.ReleaseStockRequest{ReservationId: reservation.GetReservationId()})
	if err != nil || released.GetStock()[0].GetAvailable() != SeedUnits {
		t.Fatalf("release on replica b: %v %v", released, err)
	}
	twice, err := a.ReleaseStock(callCtx(t), &inventoryv1.ReleaseStockRequest{ReservationId: reservation.GetReservationId()})
	if err != nil || twice.GetStock()[0].GetAvailable() != SeedUnits {
		t.Fatalf("a second release: %v %v, want OK and no units returned twice", twice, err)
	}
	back, err := watch.Recv()
	if err != nil || back.GetStock().GetAvailable() != SeedUnits {
		t.Fatalf("the watch after the release: %v %v", back, err)
	}
	stopWatch()
	if _, err := watch.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("the watch after its caller cancelled: %v, want CANCELLED", err)
	}
}

func TestRacingReservesOfOneOrderMakeOneReservation(t *testing.T) {
	path := storePath(t)
	replicas := []inventoryv1.InventoryServiceClient{startReplica(t, path), startReplica(t, path)}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			response, err := replicas[i%2].ReserveStock(callCtx(t), &inventoryv1.ReserveStockRequest{OrderId: "race", Items: items("sku-1010", 5)})
			ids[i], errs[i] = response.GetReservationId(), err
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("racing reserves: ids %v errors %v, want one reservation", ids, errs)
		}
	}
	stock, _ := replicas[0].GetStock(callCtx(t), &inventoryv1.GetStockRequest{ProductId: "sku-1010"})
	if stock.GetStock().GetReserved() != 5 {
		t.Fatalf("reserved after racing reserves: %v, want 5", stock)
	}
}

func TestWatchWithoutProductsSendsEveryProduct(t *testing.T) {
	client := startReplica(t, storePath(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := client.WatchStock(ctx, &inventoryv1.WatchStockRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(seedProducts()) {
		if _, err := watch.Recv(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_, err = client.WatchStock(ctx, &inventoryv1.WatchStockRequest{ProductIds: []string{"sku-1001", "nope"}})
	if err == nil {
		watchErr, _ := client.WatchStock(ctx, &inventoryv1.WatchStockRequest{ProductIds: []string{"sku-1001", "nope"}})
		_, err = watchErr.Recv()
	}
	wantStatus(t, err, codes.NotFound, "product_ids[1]: ")
}

func TestStorePathRefusesOtherURLs(t *testing.T) {
	if _, err := StorePath("postgres://x"); err == nil || !strings.HasPrefix(err.Error(), "INVENTORY_STORE_URL: ") {
		t.Fatalf("got %v, want an error naming INVENTORY_STORE_URL", err)
	}
	if path, _ := StorePath("sqlite:.data/inventory.sqlite"); path != ".data/inventory.sqlite" {
		t.Fatalf("path %q", path)
	}
}
