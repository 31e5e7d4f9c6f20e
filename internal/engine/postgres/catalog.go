package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/target"
)

// A RowDescription names a column's source by table OID and attribute number, not by name. The
// catalog turns those into schema.table.column for the masking column rules, by asking the target
// on a connection of its own and caching the answer per target and database.

// catalogTTL bounds how long a resolved table is trusted: a table renamed (or a column renamed)
// on the target is seen under its new name at most this long after.
const catalogTTL = time.Minute

// relation is one table as the catalog resolved it.
type relation struct {
	schema, table string
	columns       map[int16]string // attnum -> name
	at            time.Time
}

type catalog struct {
	mu   sync.Mutex
	rels map[catalogKey]relation
	// down holds, per target and database, until when a failed lookup is not retried: a
	// session must not wait on a dead lookup for every result.
	down map[[2]string]time.Time
}

// catalogRetry is how long after a failed lookup the catalog is not asked again.
const catalogRetry = 10 * time.Second

var errCatalogDown = errors.New("an earlier catalog lookup failed; retrying later")

type catalogKey struct {
	target, database string
	oid              uint32
}

// resolve returns the relations of oids in database on t, from the cache or from the target.
func (e *Engine) resolve(ctx context.Context, t target.Target, database string, oids []uint32) (map[uint32]relation, error) {
	cat := &e.catalog
	now := time.Now()
	out := make(map[uint32]relation, len(oids))
	var miss []uint32
	cat.mu.Lock()
	for _, oid := range oids {
		if r, ok := cat.rels[catalogKey{t.Name, database, oid}]; ok && now.Sub(r.at) < catalogTTL {
			out[oid] = r
		} else if _, dup := out[oid]; !dup && !contains32(miss, oid) {
			miss = append(miss, oid)
		}
	}
	downUntil := cat.down[[2]string{t.Name, database}]
	cat.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	if now.Before(downUntil) {
		return out, errCatalogDown
	}
	got, err := e.lookupRelations(ctx, t, database, miss)
	cat.mu.Lock()
	defer cat.mu.Unlock()
	if err != nil {
		if cat.down == nil {
			cat.down = map[[2]string]time.Time{}
		}
		cat.down[[2]string{t.Name, database}] = time.Now().Add(catalogRetry)
		return out, err
	}
	if cat.rels == nil || len(cat.rels) > 100000 {
		cat.rels = map[catalogKey]relation{}
	}
	for _, oid := range miss {
		r := got[oid] // a table the target does not know is cached as having no columns
		r.at = now
		cat.rels[catalogKey{t.Name, database, oid}] = r
		out[oid] = r
	}
	return out, nil
}

// lookupRelations asks the target, on a short-lived connection as the target's user, for the
// names of the tables oids and their columns.
func (e *Engine) lookupRelations(ctx context.Context, t target.Target, database string, oids []uint32) (map[uint32]relation, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pc, err := e.sideConn(ctx, t, database, "airlock catalog")
	if err != nil {
		return nil, fmt.Errorf("catalog lookup on target %q: %w", t.Name, err)
	}
	defer pc.Close(context.WithoutCancel(ctx))
	list := make([]string, len(oids))
	for i, o := range oids {
		list[i] = strconv.FormatUint(uint64(o), 10)
	}
	res := pc.ExecParams(ctx, `SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
		WHERE c.oid = ANY ($1::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped`,
		[][]byte{[]byte("{" + strings.Join(list, ",") + "}")}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("catalog lookup on target %q: %w", t.Name, res.Err)
	}
	out := map[uint32]relation{}
	for _, row := range res.Rows {
		oid, err1 := strconv.ParseUint(string(row[0]), 10, 32)
		num, err2 := strconv.ParseInt(string(row[3]), 10, 16)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("catalog lookup on target %q: unexpected row %q", t.Name, row)
		}
		r, ok := out[uint32(oid)]
		if !ok {
			r = relation{schema: string(row[1]), table: string(row[2]), columns: map[int16]string{}}
			out[uint32(oid)] = r
		}
		r.columns[int16(num)] = string(row[4])
	}
	return out, nil
}

func contains32(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// markRuled sets Ruled on the columns a masking column rule covers. A column with a source table
// is judged by that table's schema, name and the column's own name there (so an alias does not
// hide it, and a same-named column of another table is not masked); a column without one (an
// expression) by the name the result gives it. When the target cannot be asked, every column is
// judged by its result name, which masks more than asked and never less.
func (r *relay) markRuled(cols []event.Column, fields []pgproto3.FieldDescription) {
	m := r.masker.m
	var oids []uint32
	for _, f := range fields {
		if f.TableOID != 0 {
			oids = append(oids, f.TableOID)
		}
	}
	var rels map[uint32]relation
	if len(oids) > 0 {
		var err error
		rels, err = r.e.resolve(r.ctx, r.tgt, r.c.database, oids)
		if err != nil && !errors.Is(err, errCatalogDown) {
			r.log.Warn("masking: cannot resolve column sources; column rules match result column names", "err", err)
		}
	}
	for i, f := range fields {
		rel, ok := rels[f.TableOID]
		name, known := rel.columns[int16(f.TableAttributeNumber)]
		if f.TableOID != 0 && ok && known {
			cols[i].Ruled = m.MaskColumn(rel.schema+"."+rel.table, name)
		} else {
			cols[i].Ruled = m.MaskColumnName(cols[i].Name)
		}
	}
}
