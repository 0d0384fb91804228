package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	inventoryv1 "github.com/protomesh/protomesh/generated/go/shop/inventory/v1"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// SeedUnits is the stock each catalog product starts with on a fresh store.
const SeedUnits = 1000

// keptChanges is how many stock changes the change log keeps for watchers; a watcher polls every
// 100 ms, so it is many seconds of changes even under load.
const keptChanges = 10_000

// seedProducts are the catalog's products (services/catalog/seed.ts): sku-1001 … sku-1015.
func seedProducts() []string {
	ids := make([]string, 0, 15)
	for n := 1001; n <= 1015; n++ {
		ids = append(ids, fmt.Sprintf("sku-%d", n))
	}
	return ids
}

// Store is the inventory's state in one SQLite file shared by every replica on the machine: stock
// levels, reservations keyed by order id, and a change log that watchers on any replica poll.
type Store struct {
	db *sql.DB
}

var (
	errUnknownProduct     = errors.New("unknown product")
	errUnknownReservation = errors.New("unknown reservation")
)

// shortage is a reservation item asking for more than is available.
type shortage struct {
	index     int
	productID string
	available int32
	requested int32
}

func (s *shortage) Error() string {
	return fmt.Sprintf("items[%d].product_id: not enough stock of %q: available %d, requested %d", s.index, s.productID, s.available, s.requested)
}

// conflict is an order id reserved before with other items.
type conflict struct{ orderID string }

func (c *conflict) Error() string {
	return fmt.Sprintf("order_id: order %q already holds a reservation with other items", c.orderID)
}

// unknownItem is a reservation item naming no product.
type unknownItem struct {
	index     int
	productID string
}

func (u *unknownItem) Error() string {
	return fmt.Sprintf("items[%d].product_id: no product %q", u.index, u.productID)
}

// StorePath turns INVENTORY_STORE_URL ("sqlite:.data/inventory.sqlite", "sqlite:///abs/path") into a file path.
func StorePath(url string) (string, error) {
	path, ok := strings.CutPrefix(url, "sqlite:")
	if !ok || path == "" {
		return "", fmt.Errorf("INVENTORY_STORE_URL: must be sqlite:<path>, e.g. sqlite:.data/inventory.sqlite, got %q", url)
	}
	if strings.HasPrefix(path, "//") {
		path = strings.TrimPrefix(path, "//")
	}
	return path, nil
}

// OpenStore opens (creating the folder, the file and the schema as needed) the store at path, in
// WAL mode with a busy timeout so that replicas wait for each other's writes instead of failing,
// and seeds the catalog's products on first open.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("inventory store: %w", err)
	}
	// _txlock=immediate: every transaction takes the write lock at BEGIN, so two replicas never
	// both read and then fail to upgrade (SQLITE_BUSY that no busy timeout can resolve).
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("inventory store: %w", err)
	}
	db.SetMaxOpenConns(4)
	store := &Store{db: db}
	// Replicas opening a new file at once race to put it in WAL mode, and SQLite can answer the
	// loser "database is locked" without waiting out the busy timeout: try again for a while.
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := store.migrate(ctx)
		if err == nil {
			return store, nil
		}
		if !strings.Contains(err.Error(), "database is locked") || time.Now().After(deadline) {
			_ = db.Close()
			return nil, fmt.Errorf("inventory store %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for _, statement := range []string{
			`CREATE TABLE IF NOT EXISTS stock (product_id TEXT PRIMARY KEY, available INTEGER NOT NULL, reserved INTEGER NOT NULL)`,
			`CREATE TABLE IF NOT EXISTS reservations (reservation_id TEXT PRIMARY KEY, order_id TEXT NOT NULL UNIQUE, items TEXT NOT NULL, released INTEGER NOT NULL DEFAULT 0)`,
			`CREATE TABLE IF NOT EXISTS reservation_items (reservation_id TEXT NOT NULL, product_id TEXT NOT NULL, quantity INTEGER NOT NULL, PRIMARY KEY (reservation_id, product_id))`,
			`CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, product_id TEXT NOT NULL, available INTEGER NOT NULL, reserved INTEGER NOT NULL)`,
		} {
			if _, err := tx.ExecContext(ctx, statement); err != nil {
				return err
			}
		}
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM stock`).Scan(&count); err != nil || count > 0 {
			return err
		}
		for _, id := range seedProducts() {
			if _, err := tx.ExecContext(ctx, `INSERT INTO stock (product_id, available, reserved) VALUES (?, ?, 0)`, id, SeedUnits); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func (s *Store) inTx(ctx context.Context, run func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := run(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Stock returns one product's level; errUnknownProduct when there is none.
func (s *Store) Stock(ctx context.Context, productID string) (*inventoryv1.StockLevel, error) {
	level := &inventoryv1.StockLevel{ProductId: productID}
	err := s.db.QueryRowContext(ctx, `SELECT available, reserved FROM stock WHERE product_id = ?`, productID).Scan(&level.Available, &level.Reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errUnknownProduct
	}
	return level, err
}

// Item is one product and quantity of a reservation.
type Item struct {
	ProductID string
	Quantity  int32
}

// itemsKey is the canonical text of a reservation's items, independent of their order.
func itemsKey(items []Item) string {
	parts := make([]string, len(items))
	for i, item := range items {
		parts[i] = fmt.Sprintf("%s=%d", item.ProductID, item.Quantity)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Reserve holds items for orderID, all or nothing, in one transaction. The same order id with the
// same items returns the first reservation and reserves nothing more, unless it was released (the
// order failed and is placed again): then the same reservation holds the stock again. With other
// items it is a *conflict. Not enough stock is a *shortage, an unknown product an *unknownItem.
func (s *Store) Reserve(ctx context.Context, orderID string, items []Item) (string, []*inventoryv1.StockLevel, error) {
	var reservationID string
	var levels []*inventoryv1.StockLevel
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		levels = nil
		var existingItems string
		var released bool
		err := tx.QueryRowContext(ctx, `SELECT reservation_id, items, released FROM reservations WHERE order_id = ?`, orderID).Scan(&reservationID, &existingItems, &released)
		switch {
		case err == nil:
			if existingItems != itemsKey(items) {
				return &conflict{orderID: orderID}
			}
			if !released {
				for _, item := range items {
					level, err := stockIn(ctx, tx, item.ProductID)
					if err != nil {
						return err
					}
					levels = append(levels, level)
				}
				return nil
			}
			// The order failed and gave its stock back, and is being placed again: the same
			// reservation holds the stock again.
			if err := checkAvailable(ctx, tx, items); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE reservations SET released = 0 WHERE reservation_id = ?`, reservationID); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		default:
			if err := checkAvailable(ctx, tx, items); err != nil {
				return err
			}
			reservationID = "res-" + uuid.NewString()
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (reservation_id, order_id, items) VALUES (?, ?, ?)`, reservationID, orderID, itemsKey(items)); err != nil {
				return err
			}
			for _, item := range items {
				if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_items (reservation_id, product_id, quantity) VALUES (?, ?, ?)`, reservationID, item.ProductID, item.Quantity); err != nil {
					return err
				}
			}
		}
		for _, item := range items {
			level, err := changeStock(ctx, tx, item.ProductID, -item.Quantity)
			if err != nil {
				return err
			}
			levels = append(levels, level)
		}
		return pruneChanges(ctx, tx)
	})
	if err != nil {
		return "", nil, err
	}
	return reservationID, levels, nil
}

// checkAvailable fails with the first item that names an unknown product or wants more than is available.
func checkAvailable(ctx context.Context, tx *sql.Tx, items []Item) error {
	for i, item := range items {
		level, err := stockIn(ctx, tx, item.ProductID)
		if errors.Is(err, errUnknownProduct) {
			return &unknownItem{index: i, productID: item.ProductID}
		}
		if err != nil {
			return err
		}
		if level.Available < item.Quantity {
			return &shortage{index: i, productID: item.ProductID, available: level.Available, requested: item.Quantity}
		}
	}
	return nil
}

// Release returns a reservation's units to the available stock, once: releasing it again changes
// nothing and returns the current levels. errUnknownReservation when there is none.
func (s *Store) Release(ctx context.Context, reservationID string) ([]*inventoryv1.StockLevel, error) {
	var levels []*inventoryv1.StockLevel
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		levels = nil
		var released bool
		err := tx.QueryRowContext(ctx, `SELECT released FROM reservations WHERE reservation_id = ?`, reservationID).Scan(&released)
		if errors.Is(err, sql.ErrNoRows) {
			return errUnknownReservation
		}
		if err != nil {
			return err
		}
		items, err := reservationItems(ctx, tx, reservationID)
		if err != nil {
			return err
		}
		for _, item := range items {
			var level *inventoryv1.StockLevel
			if released {
				level, err = stockIn(ctx, tx, item.ProductID)
			} else {
				level, err = changeStock(ctx, tx, item.ProductID, item.Quantity)
			}
			if err != nil {
				return err
			}
			levels = append(levels, level)
		}
		if released {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE reservations SET released = 1 WHERE reservation_id = ?`, reservationID); err != nil {
			return err
		}
		return pruneChanges(ctx, tx)
	})
	return levels, err
}

func reservationItems(ctx context.Context, tx *sql.Tx, reservationID string) ([]Item, error) {
	rows, err := tx.QueryContext(ctx, `SELECT product_id, quantity FROM reservation_items WHERE reservation_id = ? ORDER BY rowid`, reservationID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var item Item
		if err := rows.Scan(&item.ProductID, &item.Quantity); err != nil {
			return nil, err
		}
		items = append(items, item)
	}
	return items, rows.Err()
}

func stockIn(ctx context.Context, tx *sql.Tx, productID string) (*inventoryv1.StockLevel, error) {
	level := &inventoryv1.StockLevel{ProductId: productID}
	err := tx.QueryRowContext(ctx, `SELECT available, reserved FROM stock WHERE product_id = ?`, productID).Scan(&level.Available, &level.Reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errUnknownProduct
	}
	return level, err
}

// changeStock moves delta units from reserved to available (a negative delta reserves) and logs
// the new level for watchers.
func changeStock(ctx context.Context, tx *sql.Tx, productID string, delta int32) (*inventoryv1.StockLevel, error) {
	level := &inventoryv1.StockLevel{ProductId: productID}
	err := tx.QueryRowContext(ctx, `UPDATE stock SET available = available + ?, reserved = reserved - ? WHERE product_id = ? RETURNING available, reserved`,
		delta, delta, productID).Scan(&level.Available, &level.Reserved)
	if err != nil {
		return nil, err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO changes (product_id, available, reserved) VALUES (?, ?, ?)`, productID, level.Available, level.Reserved)
	return level, err
}

func pruneChanges(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?`, keptChanges)
	return err
}

// Snapshot returns the current levels of productIDs (all products when empty), in order, and the
// change sequence they include; errUnknownProduct wrapped with the index of an unknown one.
func (s *Store) Snapshot(ctx context.Context, productIDs []string) ([]*inventoryv1.StockLevel, int64, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM changes`).Scan(&seq); err != nil {
		return nil, 0, err
	}
	var levels []*inventoryv1.StockLevel
	if len(productIDs) == 0 {
		rows, err := tx.QueryContext(ctx, `SELECT product_id, available, reserved FROM stock ORDER BY product_id`)
		if err != nil {
			return nil, 0, err
		}
		defer rows.Close()
		for rows.Next() {
			level := &inventoryv1.StockLevel{}
			if err := rows.Scan(&level.ProductId, &level.Available, &level.Reserved); err != nil {
				return nil, 0, err
			}
			levels = append(levels, level)
		}
		return levels, seq, rows.Err()
	}
	for i, id := range productIDs {
		level, err := stockIn(ctx, tx, id)
		if errors.Is(err, errUnknownProduct) {
			return nil, 0, fmt.Errorf("product_ids[%d]: no product %q: %w", i, id, errUnknownProduct)
		}
		if err != nil {
			return nil, 0, err
		}
		levels = append(levels, level)
	}
	return levels, seq, nil
}

// ChangesAfter returns the changes logged after seq, oldest first, and the last one's sequence.
func (s *Store) ChangesAfter(ctx context.Context, seq int64) ([]*inventoryv1.StockLevel, int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, product_id, available, reserved FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000`, seq)
	if err != nil {
		return nil, seq, err
	}
	defer rows.Close()
	var levels []*inventoryv1.StockLevel
	for rows.Next() {
		level := &inventoryv1.StockLevel{}
		if err := rows.Scan(&seq, &level.ProductId, &level.Available, &level.Reserved); err != nil {
			return nil, seq, err
		}
		levels = append(levels, level)
	}
	return levels, seq, rows.Err()
}
