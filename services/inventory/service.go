package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxQuantity is the most units one reservation item may ask for.
const MaxQuantity = 1000

// MaxItems is the most items one reservation may hold, and the most products one watch may name:
// a reservation holds the store's write lock, which every replica shares, while it runs.
const MaxItems = 100

// WatchPollInterval is how often a watch looks for changes made by any replica.
const WatchPollInterval = 100 * time.Millisecond

// inventoryService serves shop.inventory.v1.InventoryService over a Store.
type inventoryService struct {
	inventoryv1.UnimplementedInventoryServiceServer
	store    *Store
	logger   *slog.Logger
	draining <-chan struct{}
}

func (s *inventoryService) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	if req.GetProductId() == "" {
		return nil, status.Error(codes.InvalidArgument, "product_id: must not be empty")
	}
	level, err := s.store.Stock(ctx, req.GetProductId())
	if errors.Is(err, errUnknownProduct) {
		return nil, status.Errorf(codes.NotFound, "product_id: no product %q", req.GetProductId())
	}
	if err != nil {
		return nil, s.storeFailure(ctx, err)
	}
	return &inventoryv1.GetStockResponse{Stock: level}, nil
}

func (s *inventoryService) ReserveStock(ctx context.Context, req *inventoryv1.ReserveStockRequest) (*inventoryv1.ReserveStockResponse, error) {
	items, err := validateReservation(req)
	if err != nil {
		return nil, err
	}
	reservationID, levels, err := s.store.Reserve(ctx, req.GetOrderId(), items)
	var short *shortage
	var clash *conflict
	var unknown *unknownItem
	switch {
	case errors.As(err, &short), errors.As(err, &clash):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &unknown):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		return nil, s.storeFailure(ctx, err)
	}
	return &inventoryv1.ReserveStockResponse{ReservationId: reservationID, Stock: levels}, nil
}

func validateReservation(req *inventoryv1.ReserveStockRequest) ([]Item, error) {
	if req.GetOrderId() == "" {
		return nil, status.Error(codes.InvalidArgument, "order_id: must not be empty")
	}
	if len(req.GetItems()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "items: must hold at least one item")
	}
	if len(req.GetItems()) > MaxItems {
		return nil, status.Errorf(codes.InvalidArgument, "items: at most %d items, got %d", MaxItems, len(req.GetItems()))
	}
	seen := make(map[string]int, len(req.GetItems()))
	items := make([]Item, len(req.GetItems()))
	for i, item := range req.GetItems() {
		if item.GetProductId() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "items[%d].product_id: must not be empty", i)
		}
		if first, ok := seen[item.GetProductId()]; ok {
			return nil, status.Errorf(codes.InvalidArgument, "items[%d].product_id: %q is already in items[%d]", i, item.GetProductId(), first)
		}
		seen[item.GetProductId()] = i
		if item.GetQuantity() < 1 || item.GetQuantity() > MaxQuantity {
			return nil, status.Errorf(codes.InvalidArgument, "items[%d].quantity: must be from 1 to %d, got %d", i, MaxQuantity, item.GetQuantity())
		}
		items[i] = Item{ProductID: item.GetProductId(), Quantity: item.GetQuantity()}
	}
	return items, nil
}

func (s *inventoryService) ReleaseStock(ctx context.Context, req *inventoryv1.ReleaseStockRequest) (*inventoryv1.ReleaseStockResponse, error) {
	if req.GetReservationId() == "" {
		return nil, status.Error(codes.InvalidArgument, "reservation_id: must not be empty")
	}
	levels, err := s.store.Release(ctx, req.GetReservationId())
	if errors.Is(err, errUnknownReservation) {
		return nil, status.Errorf(codes.NotFound, "reservation_id: no reservation %q", req.GetReservationId())
	}
	if err != nil {
		return nil, s.storeFailure(ctx, err)
	}
	return &inventoryv1.ReleaseStockResponse{Stock: levels}, nil
}

// WatchStock sends the current level of each requested product (every product when none is
// named), then every change to them made by any replica sharing the store, until the caller
// cancels or the server drains (UNAVAILABLE, so that the caller watches another replica).
func (s *inventoryService) WatchStock(req *inventoryv1.WatchStockRequest, stream inventoryv1.InventoryService_WatchStockServer) error {
	ctx := stream.Context()
	if len(req.GetProductIds()) > MaxItems {
		return status.Errorf(codes.InvalidArgument, "product_ids: at most %d products, got %d", MaxItems, len(req.GetProductIds()))
	}
	for i, id := range req.GetProductIds() {
		if id == "" {
			return status.Errorf(codes.InvalidArgument, "product_ids[%d]: must not be empty", i)
		}
	}
	levels, seq, err := s.store.Snapshot(ctx, req.GetProductIds())
	if errors.Is(err, errUnknownProduct) {
		return status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return s.storeFailure(ctx, err)
	}
	wanted := make(map[string]bool, len(req.GetProductIds()))
	for _, id := range req.GetProductIds() {
		wanted[id] = true
	}
	for _, level := range levels {
		if err := stream.Send(&inventoryv1.WatchStockResponse{Stock: level}); err != nil {
			return err
		}
	}
	ticker := time.NewTicker(WatchPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.draining:
			return status.Error(codes.Unavailable, "server is shutting down")
		case <-ticker.C:
		}
		var changes []*inventoryv1.StockLevel
		changes, seq, err = s.store.ChangesAfter(ctx, seq)
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return s.storeFailure(ctx, err)
		}
		for _, level := range changes {
			if len(wanted) > 0 && !wanted[level.GetProductId()] {
				continue
			}
			if err := stream.Send(&inventoryv1.WatchStockResponse{Stock: level}); err != nil {
				return err
			}
		}
	}
}

// storeFailure is the status of a store error: the call's own end when its context is done,
// UNAVAILABLE otherwise (the store may be busy); the cause goes to the log, not to the caller.
func (s *inventoryService) storeFailure(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.logger.Error("inventory store failed", "err", err.Error())
	return status.Error(codes.Unavailable, "inventory store unavailable")
}
