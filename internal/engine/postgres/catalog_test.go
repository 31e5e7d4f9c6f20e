package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/connector"
	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
	"github.com/airlock-gw/airlock/internal/target"
)

// TestMarkRuled checks which columns a table-qualified column rule covers, from a catalog whose
// answers are already cached (the e2e suite asks a real target).
func TestMarkRuled(t *testing.T) {
	r, _, _ := newRecordedRelay(t)
	m, err := masking.New([]string{"column:public.pay.cvv", "column:secret"})
	if err != nil {
		t.Fatal(err)
	}
	r.masker = newMasker(m)
	r.ctx = context.Background()
	r.tgt = target.Target{Name: "pg", Address: "127.0.0.1:1"} // refuses: only the cache answers
	r.e.d.Connector = connector.Direct{Timeout: time.Second}
	r.c.database = "db"
	now := time.Now()
	r.e.catalog.rels = map[catalogKey]relation{
		{"pg", "db", 100}: {schema: "public", table: "pay", columns: map[int16]string{1: "id", 2: "cvv"}, at: now},
		{"pg", "db", 200}: {schema: "public", table: "orders", columns: map[int16]string{1: "cvv", 2: "secret"}, at: now},
		{"pg", "db", 300}: {schema: "archive", table: "pay", columns: map[int16]string{1: "cvv"}, at: now},
	}
	fields := []pgproto3.FieldDescription{
		{Name: []byte("code"), TableOID: 100, TableAttributeNumber: 2}, // pay.cvv under an alias
		{Name: []byte("cvv"), TableOID: 100, TableAttributeNumber: 1},  // pay.id named cvv
		{Name: []byte("cvv"), TableOID: 200, TableAttributeNumber: 1},  // orders.cvv
		{Name: []byte("x"), TableOID: 200, TableAttributeNumber: 2},    // orders.secret: any table
		{Name: []byte("cvv"), TableOID: 300, TableAttributeNumber: 1},  // another schema's pay
		{Name: []byte("cvv")}, // an expression named cvv
		{Name: []byte("other")},
	}
	want := []bool{true, false, false, true, false, true, false}
	cols := make([]event.Column, len(fields))
	for i, f := range fields {
		cols[i].Name = string(f.Name)
	}
	r.markRuled(cols, fields)
	for i, c := range cols {
		if c.Ruled != want[i] {
			t.Errorf("column %d (%s, table %d attnum %d): ruled %v, want %v", i, c.Name, fields[i].TableOID, fields[i].TableAttributeNumber, c.Ruled, want[i])
		}
	}

	// A table the catalog cannot resolve (the target is unreachable) falls back to the result
	// name: more than asked, never less.
	fields = []pgproto3.FieldDescription{{Name: []byte("cvv"), TableOID: 999, TableAttributeNumber: 1}, {Name: []byte("id"), TableOID: 999, TableAttributeNumber: 2}}
	cols = []event.Column{{Name: "cvv"}, {Name: "id"}}
	r.markRuled(cols, fields)
	if !cols[0].Ruled || cols[1].Ruled {
		t.Errorf("unresolved table: ruled %v %v, want true false", cols[0].Ruled, cols[1].Ruled)
	}
}
