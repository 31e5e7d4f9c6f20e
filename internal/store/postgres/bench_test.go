package postgres

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/store"
)

// benchData is about 200 bytes, the size of a short query or a small result row, as in
// filestore's benchmarks.
var benchData = func() []byte {
	d := []byte(`{"text":"SELECT id, name, email FROM users WHERE id = $1","protocol":"extended","params":[{"text":"42"}]}`)
	return append(d, bytes.Repeat([]byte(" "), 200-len(d))...)
}()

// BenchmarkAppend measures what the recorder pays per commit: sealing the events into the chain
// and one committed INSERT, from one session and from 16 sessions at once (the server's group
// commit then shares WAL flushes between them).
func BenchmarkAppend(b *testing.B) {
	for _, sessions := range []int{1, 16} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("sessions=%d/batch=%d", sessions, batch), func(b *testing.B) {
				s, _, _ := openTest(b)
				var next atomic.Int64
				b.SetParallelism(sessions) // goroutines = sessions * GOMAXPROCS
				b.RunParallel(func(pb *testing.PB) {
					id := fmt.Sprintf("bench-%d", next.Add(1))
					w, err := s.Create(context.Background(), store.Session{ID: id})
					if err != nil {
						b.Error(err)
						return
					}
					events := make([]*event.Event, batch)
					for i := range events {
						events[i] = &event.Event{Session: id, Type: event.Query, Data: benchData}
					}
					var (
						seq  uint64
						prev [32]byte
						buf  []byte
					)
					for pb.Next() {
						for _, e := range events {
							seq++
							e.Seq = seq
							buf = e.Seal(prev, buf)
							prev = e.Hash
						}
						if err := w.Append(events...); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkInsertMethods compares ways of writing a batch in one commit, to justify the unnest
// INSERT that Append uses: a multi-row VALUES (a new prepared statement per batch size) and
// CopyFrom (a COPY, which pgx precedes with a query for the column types).
func BenchmarkInsertMethods(b *testing.B) {
	methods := map[string]func(ctx context.Context, c *pgx.Conn, rows [][]any) error{
		"unnest": func(ctx context.Context, c *pgx.Conn, rows [][]any) error {
			seqs, types, offs, times := make([]int64, len(rows)), make([]string, len(rows)), make([]int64, len(rows)), make([]int64, len(rows))
			datas, raws, hashes := make([][]byte, len(rows)), make([][]byte, len(rows)), make([][]byte, len(rows))
			for i, r := range rows {
				seqs[i], types[i], offs[i], times[i] = r[1].(int64), r[2].(string), r[3].(int64), r[4].(int64)
				datas[i], raws[i], hashes[i] = r[5].([]byte), nil, r[7].([]byte)
			}
			_, err := c.Exec(ctx, insertEvents, rows[0][0], seqs, types, offs, times, datas, raws, hashes)
			return err
		},
		"values": func(ctx context.Context, c *pgx.Conn, rows [][]any) error {
			var q strings.Builder
			q.WriteString(`INSERT INTO events (session_id, seq, type, offset_ns, time_ns, data, raw, hash) VALUES `)
			args := make([]any, 0, 8*len(rows))
			for i, r := range rows {
				if i > 0 {
					q.WriteString(", ")
				}
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d::bytea, $%d)", 8*i+1, 8*i+2, 8*i+3, 8*i+4, 8*i+5, 8*i+6, 8*i+7, 8*i+8)
				args = append(args, r...)
			}
			_, err := c.Exec(ctx, q.String(), args...)
			return err
		},
		"copy": func(ctx context.Context, c *pgx.Conn, rows [][]any) error {
			_, err := c.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"session_id", "seq", "type", "offset_ns", "time_ns", "data", "raw", "hash"}, pgx.CopyFromRows(rows))
			return err
		},
	}
	for _, name := range []string{"unnest", "values", "copy"} {
		for _, batch := range []int{1, 64} {
			for _, syncCommit := range []string{"on", "off"} {
				b.Run(fmt.Sprintf("%s/batch=%d/synchronous_commit=%s", name, batch, syncCommit), func(b *testing.B) {
					s, _, _ := openTest(b)
					if _, err := s.Create(context.Background(), store.Session{ID: "bench"}); err != nil {
						b.Fatal(err)
					}
					ctx := context.Background()
					c, err := s.pool.acquire(ctx)
					if err != nil {
						b.Fatal(err)
					}
					defer s.pool.release(c)
					// off takes the WAL flush out, leaving what the method itself costs.
					if _, err := c.Exec(ctx, "SET synchronous_commit = "+syncCommit); err != nil {
						b.Fatal(err)
					}
					hash := bytes.Repeat([]byte{1}, 32)
					rows := make([][]any, batch)
					var seq int64
					b.ResetTimer()
					for b.Loop() {
						for i := range rows {
							seq++
							rows[i] = []any{"bench", seq, "query", seq, seq, benchData, []byte(nil), hash}
						}
						if err := methods[name](ctx, c, rows); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
				})
			}
		}
	}
}
