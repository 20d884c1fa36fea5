package engine

import (
	"sync"

	"github.com/pgcloak/pgcloak/proxy/sqlplan"
)

// Bounds of the analysis cache: parsing costs tens of microseconds, and
// drivers send the same statement texts again and again (every unnamed
// Parse of the extended protocol, prepared statements of new sessions).
const (
	planCacheEntries = 4096
	planCacheMaxSQL  = 16 << 10 // longer texts are analysed every time
)

// planCache holds analyses by search_path and SQL text, shared by all
// sessions. Analyses are immutable once made.
type planCache struct {
	mu sync.Mutex
	m  map[string]planEntry
}

type planEntry struct {
	a   *sqlplan.Analysis
	err error
}

func (c *planCache) get(key string) (planEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	return e, ok
}

func (c *planCache) put(key string, e planEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]planEntry)
	}
	if len(c.m) >= planCacheEntries {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[key] = e
}
