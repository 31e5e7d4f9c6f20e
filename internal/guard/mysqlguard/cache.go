package mysqlguard

import (
	"slices"
	"sync"

	"github.com/airlock-gw/airlock/internal/guard"
)

// The classifications of statement texts already seen, shared by every session: clients send
// the same texts again and again (BEGIN and COMMIT, an application's queries, the statements a
// connection pool prepares on each new connection), and parsing one with vitess costs tens of
// microseconds. The key is the whole text, byte for byte, and the sql_mode that changes how it
// parses: a hit is the classification the parser gave that very text, and any other text, however
// close, is parsed. Only results that do not depend on the session (classifyState) are kept.
const (
	cacheMaxText    = 4 << 10 // longer texts are parsed every time
	cacheMaxEntries = 4096
)

type cacheKey struct {
	sql         string
	noBackslash bool
}

type resultCache struct {
	mu sync.Mutex
	m  map[cacheKey]guard.Result
}

var results = resultCache{m: make(map[cacheKey]guard.Result)}

func (c *resultCache) get(sql string, noBackslash bool) (guard.Result, bool) {
	if len(sql) > cacheMaxText {
		return guard.Result{}, false
	}
	c.mu.Lock()
	r, ok := c.m[cacheKey{sql, noBackslash}]
	c.mu.Unlock()
	return r, ok
}

// put keeps r for sql. Its slices are shared by every session that gets it: they are clipped, so
// that an append by a user makes a copy instead of writing into them.
func (c *resultCache) put(sql string, noBackslash bool, r guard.Result) {
	if len(sql) > cacheMaxText {
		return
	}
	st := slices.Clip(slices.Clone(r.Statements))
	for i := range st {
		st[i].Kinds = slices.Clip(st[i].Kinds)
		st[i].Relations = slices.Clip(st[i].Relations)
		st[i].Classes = slices.Clip(st[i].Classes)
		st[i].Reasons = slices.Clip(st[i].Reasons)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= cacheMaxEntries {
		// Full: make room by forgetting an arbitrary entry (map order), a bounded cost that
		// keeps most of what is in use.
		for k := range c.m {
			delete(c.m, k)
			if len(c.m) < cacheMaxEntries*7/8 {
				break
			}
		}
	}
	c.m[cacheKey{sql, noBackslash}] = guard.Result{Statements: st}
}

// classifyCached is classify for a session's top-level statement, through the cache.
func classifyCached(sql string, noBackslash bool, s *Session) guard.Result {
	if r, ok := results.get(sql, noBackslash); ok {
		return r
	}
	r, stateful, _ := classifyState(sql, noBackslash, s, 0)
	if !stateful {
		results.put(sql, noBackslash, r)
	}
	return r
}
