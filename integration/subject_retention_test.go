package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/cmd"
)

// TestSubjectRetention applies two retention rules (customers: forget
// after 3 years unseen; orders: delete after 1 year) in small batches, the
// first run stopped half-way and resumed, while two clients write through
// pgcloak: new subjects, new orders, new values for fresh subjects, and old
// subjects seen again. What should stay stays and reads; what is past its
// time is forgotten or deleted.
func TestSubjectRetention(t *testing.T) {
	e := newSubjEnv(t, subjEnvOptions{extra: `retention:
  public.customers: {column: seen, keep: 3y, action: forget}
  public.orders: {column: created_at, keep: 1y, action: delete}`})
	p := e.start()
	c := e.through(p)
	ctx := context.Background()
	now := time.Now()
	old, older := now.AddDate(-4, 0, 0), now.AddDate(-2, 0, 0)
	var customers, orders [][]any
	for id := int64(1); id <= 300; id++ {
		seen, created := now, now
		if id <= 200 { // subjects 1-200 are past their time, and so are their orders
			seen, created = old, older
		}
		customers = append(customers, []any{id, fmt.Sprintf("c%d@x", id), seen})
		orders = append(orders, []any{id, fmt.Sprintf("%d Main St", id), created})
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"id", "email", "seen"}, pgx.CopyFromRows(customers)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"orders"}, []string{"customer_id", "address", "created_at"}, pgx.CopyFromRows(orders)); err != nil {
		t.Fatal(err)
	}
	mustExec(t, e.direct(), `UPDATE customers SET seen = now() WHERE id <= 20`) // seen again before the run

	code, out, _ := e.run(cmd.RunRetention, "run", "--dry-run")
	if code != 0 || !strings.Contains(out, "public.customers: would forget 180 subjects") || !strings.Contains(out, "public.orders: would delete 200 rows") {
		t.Fatalf("dry run: %d\n%s", code, out)
	}

	// Two writers through pgcloak while retention runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	latest := map[int64]string{} // fresh subject → the last email written
	var writeErr atomic.Value
	for w := 0; w < 2; w++ {
		wc := e.through(p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); !stop.Load(); i++ {
				id := 1000 + int64(w)*100000 + i
				email := fmt.Sprintf("new%d@x", id)
				if _, err := wc.Exec(ctx, `INSERT INTO customers (id, email) VALUES ($1, $2)`, id, email); err != nil {
					writeErr.Store(err)
					return
				}
				if _, err := wc.Exec(ctx, `INSERT INTO orders (customer_id, address) VALUES ($1, $2)`, id, "new order"); err != nil {
					writeErr.Store(err)
					return
				}
				fresh := 201 + (i*2+int64(w))%100
				v := fmt.Sprintf("v%d@x", i)
				mu.Lock()
				if _, err := wc.Exec(ctx, `UPDATE customers SET email = $1 WHERE id = $2`, v, fresh); err != nil {
					mu.Unlock()
					writeErr.Store(err)
					return
				}
				latest[fresh] = v
				latest[id] = email
				mu.Unlock()
				if _, err := wc.Exec(ctx, `UPDATE customers SET seen = now() WHERE id = $1`, 21+i%20); err != nil { // seen again, racing the run
					writeErr.Store(err)
					return
				}
			}
		}()
	}
	code, out, _ = e.run(cmd.RunRetention, "run", "--batch", "25", "--max-batches", "2")
	if code != 0 || !strings.Contains(out, "stopped at --max-batches") {
		t.Fatalf("first run: %d\n%s", code, out)
	}
	code, out, _ = e.run(cmd.RunRetention, "run", "--batch", "25")
	stop.Store(true)
	wg.Wait()
	if err, _ := writeErr.Load().(error); err != nil {
		t.Fatalf("a writer failed: %v", err)
	}
	if code != 0 || !strings.Contains(out, "public.orders: deleted 150 rows") {
		t.Fatalf("second run: %d\n%s", code, out)
	}

	got := map[int64]string{}
	waitFor(t, time.Minute, "the forgotten subjects read as NULL", func() bool {
		got = subjectEmails(t, c)
		return got[200] == "<null>" && got[41] == "<null>"
	})
	for id := int64(1); id <= 200; id++ {
		switch {
		case id <= 20 && got[id] != fmt.Sprintf("c%d@x", id):
			t.Errorf("subject %d, seen again before the run, reads %q", id, got[id])
		case id > 40 && got[id] != "<null>":
			t.Errorf("subject %d, past its time, reads %q", id, got[id])
		}
	}
	mu.Lock()
	for id, want := range latest {
		if got[id] != want {
			t.Errorf("subject %d written meanwhile reads %q, want %q", id, got[id], want)
		}
	}
	mu.Unlock()
	for id := int64(201); id <= 300; id++ {
		if got[id] == "<null>" {
			t.Errorf("fresh subject %d was forgotten", id)
		}
	}
	d := e.direct()
	var oldOrders, freshOrders, newOrders int
	if err := d.QueryRow(ctx, `SELECT count(*) FILTER (WHERE created_at < now() - interval '1 year'),
		count(*) FILTER (WHERE customer_id BETWEEN 201 AND 300), count(*) FILTER (WHERE customer_id >= 1000) FROM orders`).Scan(&oldOrders, &freshOrders, &newOrders); err != nil {
		t.Fatal(err)
	}
	if oldOrders != 0 || freshOrders != 100 || newOrders != len(latest)-countBelow(latest, 1000) {
		t.Fatalf("orders: %d old left, %d fresh, %d new (of %d)", oldOrders, freshOrders, newOrders, len(latest))
	}
	// Nothing is left to do.
	if code, out, _ := e.run(cmd.RunRetention, "run"); code != 0 || !strings.Contains(out, "forgot 0 subjects") || !strings.Contains(out, "deleted 0 rows") {
		t.Fatalf("third run: %d\n%s", code, out)
	}
}

// countBelow counts the keys of m below n.
func countBelow(m map[int64]string, n int64) int {
	k := 0
	for id := range m {
		if id < n {
			k++
		}
	}
	return k
}
