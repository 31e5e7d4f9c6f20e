package e2e

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestMemoryFlatOnLargeResult streams 1M rows through a gateway of its own and samples the
// gateway's VmRSS every 20ms: the bound is 100 MB whatever the result size.
func TestMemoryFlatOnLargeResult(t *testing.T) {
	g := startGateway(t, gwConfig{})
	app := uniq("memory_1m")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()

	base, err := rssKB(g.pid())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		maxKB   = base
		samples int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				kb, err := rssKB(g.pid())
				if err != nil {
					continue
				}
				mu.Lock()
				maxKB = max(maxKB, kb)
				samples++
				mu.Unlock()
			}
		}
	}()

	const n = 1000000
	start := time.Now()
	rows, err := c.Query(ctx, "select g, md5(g::text) from generate_series(1,1000000) g")
	if err != nil {
		t.Fatal(err)
	}
	var got, sum int64
	for rows.Next() {
		var g int64
		var h string
		if err := rows.Scan(&g, &h); err != nil {
			t.Fatal(err)
		}
		got++
		sum += g
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	c.Close(ctx)
	// Keep sampling while the recording is flushed and the session closed.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	if got != n || sum != int64(n)*(n+1)/2 {
		t.Errorf("client read %d rows (sum %d), want %d", got, sum, n)
	}
	t.Logf("1M rows in %v; gateway VmRSS %d kB at start, max %d kB over %d samples", took, base, maxKB, samples)
	if samples < 10 {
		t.Errorf("only %d RSS samples", samples)
	}
	if maxKB >= 100*1024 {
		t.Errorf("gateway max RSS %d kB >= 100 MB while streaming 1M rows", maxKB)
	}

	_, ev := g.waitSession(t, app)
	if c := sumNum(ev, "rows", "count"); c != n {
		t.Errorf("recording holds %d rows, want %d", c, n)
	}
	var recorded int64
	for _, e := range ofType(ev, "rows") {
		recorded += int64(len(e.Rows))
	}
	if recorded != 0 && recorded != n {
		t.Errorf("rows events carry %d row values, their counts say %d", recorded, n)
	}
	res := ofType(ev, "result")
	if len(res) == 0 || res[len(res)-1].str("tag") != "SELECT 1000000" {
		t.Errorf("result events %+v, want tag SELECT 1000000", res)
	}
}
