package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
)

// paramHas reports whether a recorded parameter (text, or hex of its bytes) equals want or
// its binary encoding wantBin.
func paramHas(p any, want string, wantBin []byte) bool {
	m, ok := p.(map[string]any)
	if !ok {
		return false
	}
	if s, ok := m["text"].(string); ok && (s == want || (wantBin != nil && s == string(wantBin))) {
		return true
	}
	if h, ok := m["hex"].(string); ok {
		h = strings.TrimPrefix(strings.ToLower(h), `\x`)
		if h == hex.EncodeToString([]byte(want)) || (wantBin != nil && h == hex.EncodeToString(wantBin)) {
			return true
		}
	}
	return false
}

func TestPgxPreparedStatement(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("pgx_prepared")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	const sql = "select $1::int4 + $2::int4 as sum, $3::text as label"
	if _, err := c.Prepare(ctx, "e2e_stmt", sql); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		a, b  int32
		label string
	}{{40, 2, "param-marker-1"}, {-5, 5, "param-marker-2"}} {
		var sum int32
		var label string
		if err := c.QueryRow(ctx, "e2e_stmt", tc.a, tc.b, tc.label).Scan(&sum, &label); err != nil {
			t.Fatalf("execute %d: %v", i, err)
		}
		if sum != tc.a+tc.b || label != tc.label {
			t.Errorf("execute %d: got %d %q", i, sum, label)
		}
	}
	c.Close(ctx)

	_, ev := g.waitSession(t, app)
	var qs []Event
	for _, e := range ofType(ev, "query") {
		if e.str("text") == sql {
			qs = append(qs, e)
		}
	}
	if len(qs) != 2 {
		t.Fatalf("want 2 query events with the prepared text, have %d: %v", len(qs), queryTexts(ev))
	}
	for i, q := range qs {
		if q.str("protocol") != "extended" {
			t.Errorf("query %d protocol %q, want extended", i, q.str("protocol"))
		}
		params, _ := q.Data["params"].([]any)
		if len(params) != 3 {
			t.Errorf("query %d params = %v, want 3", i, q.Data["params"])
			continue
		}
		label := fmt.Sprintf("param-marker-%d", i+1)
		if !paramHas(params[2], label, nil) {
			t.Errorf("query %d param 3 = %v, want %q", i, params[2], label)
		}
	}
	if params, _ := qs[0].Data["params"].([]any); len(params) == 3 && !paramHas(params[0], "40", []byte{0, 0, 0, 40}) {
		t.Errorf("query 1 param 1 = %v, want 40 (text or binary int4)", params[0])
	}
}

func TestPgxBatchPipeline(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("pgx_batch")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	// pgx prepares every statement of a batch before sending it, so the table must exist first.
	if _, err := c.Exec(ctx, "create temp table e2e_batch (id int, v text)"); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("insert into e2e_batch values (0, 'zero')")
	b.Queue("insert into e2e_batch select g, 'v'||g from generate_series(1,$1::int) g", 25)
	b.Queue("select count(*) from e2e_batch where v like $1", "v1%")
	b.Queue("select sum(id) from e2e_batch")
	br := c.SendBatch(ctx, b)
	if ct, err := br.Exec(); err != nil || ct.RowsAffected() != 1 {
		t.Fatalf("insert 0: %v %v", ct, err)
	}
	ct, err := br.Exec()
	if err != nil || ct.RowsAffected() != 25 {
		t.Fatalf("insert: %v %v", ct, err)
	}
	var cnt, sum int64
	if err := br.QueryRow().Scan(&cnt); err != nil {
		t.Fatal(err)
	}
	if err := br.QueryRow().Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if cnt != 11 || sum != 325 { // v1, v10..v19 ; 1+..+25
		t.Errorf("batch results cnt=%d sum=%d, want 11 325", cnt, sum)
	}
	c.Close(ctx)

	_, ev := g.waitSession(t, app)
	var order []uint64
	for _, s := range []string{"insert into e2e_batch values (0", "insert into e2e_batch select", "select count(*) from e2e_batch", "select sum(id)"} {
		q := mustQuery(t, ev, s)
		if q.str("protocol") != "extended" {
			t.Errorf("%q recorded with protocol %q, want extended", s, q.str("protocol"))
		}
		order = append(order, q.Seq)
	}
	for i := 1; i < len(order); i++ {
		if order[i] <= order[i-1] {
			t.Errorf("batch statements recorded out of order: seqs %v", order)
		}
	}
	tags := map[string]bool{}
	for _, e := range ofType(ev, "result") {
		tags[e.str("tag")] = true
	}
	if !tags["INSERT 0 25"] || !tags["INSERT 0 1"] {
		t.Errorf("result tags %v, want INSERT 0 1 and INSERT 0 25", tags)
	}
}

func TestPgxBinaryFormats(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("pgx_binary")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	ts := time.Date(2026, 11, 2, 13, 14, 15, 123456000, time.UTC)
	blob := []byte{0, 1, 2, 0xfe, 0xff, '\\', 'x', 0}
	var num pgtype.Numeric
	if err := num.Scan("-12345678901234567890.000123"); err != nil {
		t.Fatal(err)
	}
	var (
		gotI   int32
		gotTS  time.Time
		gotNum pgtype.Numeric
		gotB   []byte
	)
	err := c.QueryRow(ctx, "select $1::int4, $2::timestamptz, $3::numeric, $4::bytea",
		int32(-2147483648), ts, num, blob).Scan(&gotI, &gotTS, &gotNum, &gotB)
	if err != nil {
		t.Fatal(err)
	}
	if gotI != -2147483648 {
		t.Errorf("int4 = %d", gotI)
	}
	if !gotTS.Equal(ts) {
		t.Errorf("timestamptz = %v, want %v", gotTS, ts)
	}
	nv, _ := gotNum.Value()
	if nv != "-12345678901234567890.000123" {
		t.Errorf("numeric = %v", nv)
	}
	if !bytes.Equal(gotB, blob) {
		t.Errorf("bytea = %x, want %x", gotB, blob)
	}
	c.Close(ctx)

	_, ev := g.waitSession(t, app)
	mustQuery(t, ev, "$4::bytea")
	cols := ofType(ev, "columns")
	if len(cols) == 0 {
		t.Fatal("no columns event")
	}
	list, _ := cols[len(cols)-1].Data["columns"].([]any)
	if len(list) != 4 {
		t.Fatalf("columns = %v", cols[len(cols)-1].Data)
	}
	var binary int
	for _, col := range list {
		if m, _ := col.(map[string]any); m != nil && fmt.Sprint(m["format"]) == "1" {
			binary++
		}
	}
	if binary != 4 {
		// pgx Describes the statement (formats not known yet, all 0) and then asks for
		// binary results in Bind: the columns event must describe the rows that follow.
		t.Errorf("%d of 4 columns recorded in binary format, but Bind asked for binary results (and the rows event holds binary values): %v", binary, list)
	}
	if n := sumNum(ev, "rows", "count"); n != 1 {
		t.Errorf("rows count %d, want 1", n)
	}
	// The values are kept as the client got them (binary) and the API renders them by type.
	rows := strings.Join(rawRows(ofType(ev, "rows")), " ")
	for _, want := range []string{"-2147483648", "2026-11-02 13:14:15.123456Z", "-12345678901234567890.000123", `\\x` + hex.EncodeToString(blob)} {
		if !strings.Contains(rows, want) {
			t.Errorf("rows event lacks the value %s: %s", want, rows)
		}
	}
	t.Logf("columns %v; rows %v", list, rows)
}

func TestPgxCopy(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("pgx_copy")
	c := g.connect(t, "alice", alicePassword, "pg", app)
	ctx := context.Background()
	if _, err := c.Exec(ctx, "create temp table e2e_pgxcopy (id int8, name text, at timestamptz)"); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	now := time.Now().UTC().Truncate(time.Microsecond)
	copied, err := c.CopyFrom(ctx, pgx.Identifier{"e2e_pgxcopy"}, []string{"id", "name", "at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{int64(i), fmt.Sprintf("name-%d", i), now}, nil
		}))
	if err != nil || copied != n {
		t.Fatalf("CopyFrom: %d %v", copied, err)
	}
	var cnt int64
	if err := c.QueryRow(ctx, "select count(*) from e2e_pgxcopy").Scan(&cnt); err != nil || cnt != n {
		t.Fatalf("count after CopyFrom = %d %v", cnt, err)
	}
	var out bytes.Buffer
	tag, err := c.PgConn().CopyTo(ctx, &out, "copy (select id, name from e2e_pgxcopy order by id) to stdout")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != n || bytes.Count(out.Bytes(), []byte("\n")) != n {
		t.Errorf("CopyTo: tag %q, %d lines, want %d", tag, bytes.Count(out.Bytes(), []byte("\n")), n)
	}
	if !bytes.HasPrefix(out.Bytes(), []byte("0\tname-0\n1\tname-1\n")) {
		t.Errorf("CopyTo output starts %q", clip(out.String(), 100))
	}
	c.Close(ctx)

	_, ev := g.waitSession(t, app)
	mustQuery(t, ev, "e2e_pgxcopy")
	if in := sumNum(ev, "copy.in", "bytes"); in <= 0 {
		t.Errorf("copy.in events carry %d bytes, want the binary COPY stream", in)
	}
	if o := sumNum(ev, "copy.out", "bytes"); o != int64(out.Len()) {
		t.Errorf("copy.out events carry %d bytes, client received %d", o, out.Len())
	}
	tags := map[string]bool{}
	for _, e := range ofType(ev, "result") {
		tags[e.str("tag")] = true
	}
	if want := fmt.Sprintf("COPY %d", n); !tags[want] {
		t.Errorf("no result tagged %q: %v", want, tags)
	}
}

func TestPgxListenNotify(t *testing.T) {
	g := sharedGateway(t)
	appL, appN := uniq("pgx_listen"), uniq("pgx_notify")
	listener := g.connect(t, "alice", alicePassword, "pg", appL)
	notifier := g.connect(t, "bob", bobPassword, "pg", appN)
	ctx := context.Background()
	channel := "e2e_chan"
	if _, err := listener.Exec(ctx, "listen "+channel); err != nil {
		t.Fatal(err)
	}
	payload := uniq("payload")
	if _, err := notifier.Exec(ctx, "select pg_notify($1, $2)", channel, payload); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no notification through the gateway within 10s: %v", err)
	}
	if n.Channel != channel || n.Payload != payload {
		t.Errorf("notification %q %q, want %q %q", n.Channel, n.Payload, channel, payload)
	}
	listener.Close(ctx)
	notifier.Close(ctx)

	_, ev := g.waitSession(t, appL)
	notes := ofType(ev, "notification")
	if len(notes) != 1 || notes[0].str("channel") != channel || notes[0].str("payload") != payload {
		t.Errorf("notification events = %+v, want one on %s with %s", notes, channel, payload)
	}
	_, evN := g.waitSession(t, appN)
	mustQuery(t, evN, "pg_notify")
}

func TestPgxCancel(t *testing.T) {
	g := sharedGateway(t)
	app := uniq("pgx_cancel")
	cfg, err := pgx.ParseConfig(g.dsn("alice", alicePassword, "pg", app))
	if err != nil {
		t.Fatal(err)
	}
	// pgx's default on context cancel is to close the socket; ask it to send a CancelRequest
	// (which the gateway must route to the right upstream) and keep the connection.
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, CancelRequestDelay: 0, DeadlineDelay: 20 * time.Second}
	}
	ctx := context.Background()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Exec(qctx, "select pg_sleep(30)")
	took := time.Since(start)
	if code := pgErrCode(err); code != "57014" {
		t.Fatalf("pg_sleep(30) with a 500ms context: err %v (code %q) after %v, want SQLSTATE 57014", err, code, took)
	}
	if took > 8*time.Second {
		t.Errorf("cancel took %v", took)
	}
	var one int
	if err := c.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection not usable after cancel: %v", err)
	}
	c.Close(ctx)

	_, ev := g.waitSession(t, app)
	mustQuery(t, ev, "pg_sleep(30)")
	cancels := ofType(ev, "cancel")
	if len(cancels) != 1 {
		t.Errorf("want 1 cancel event, have %d", len(cancels))
	} else if d, _ := cancels[0].Data["delivered"].(bool); !d {
		t.Errorf("cancel event = %v, want delivered", cancels[0].Data)
	}
	var saw bool
	for _, e := range ofType(ev, "error") {
		saw = saw || e.str("code") == "57014"
	}
	if !saw {
		t.Errorf("no error event with code 57014")
	}
	mustQuery(t, ev, "select 1")
}
