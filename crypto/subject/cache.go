package subject

import (
	"container/list"
	"sync"

	"github.com/pgcloak/pgcloak/crypto"
)

// cache holds the subject keys an instance has used lately, at most max of
// them, least recently used first out. It is found by key id (reads: the
// value names its key) and by subject (writes). A forgotten key stays as a
// tombstone (key nil), so that reading the values of a forgotten subject
// again costs no database read.
//
// One mutex guards it; a hit is a map lookup and a list move.
type cache struct {
	mu        sync.Mutex
	max       int
	lru       list.List // of *entry, most recent first
	byID      map[crypto.SubjectKeyID]*entry
	bySubject map[subjectRef]*entry
	// epoch counts forgets. A key read from the database is cached only if
	// no forget came in since the read started: the forget may be of it.
	epoch uint64
}

type subjectRef struct {
	scope string
	hash  Hash
}

type entry struct {
	id   crypto.SubjectKeyID
	key  *crypto.SubjectKey // nil: forgotten
	subj subjectRef         // zero for a tombstone
	elem *list.Element
}

func newCache(max int) *cache {
	return &cache{max: max, byID: map[crypto.SubjectKeyID]*entry{}, bySubject: map[subjectRef]*entry{}}
}

// byKeyID returns the entry of id and whether there is one.
func (c *cache) byKeyID(id crypto.SubjectKeyID) (key *crypto.SubjectKey, forgotten, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byID[id]
	if e == nil {
		return nil, false, false
	}
	c.lru.MoveToFront(e.elem)
	return e.key, e.key == nil, true
}

// bySubjectRef returns the live key of a subject, or nil.
func (c *cache) bySubjectRef(s subjectRef) *crypto.SubjectKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.bySubject[s]
	if e == nil {
		return nil
	}
	c.lru.MoveToFront(e.elem)
	return e.key
}

// currentEpoch is the epoch to pass to put for a read starting now.
func (c *cache) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put caches key (nil: a tombstone for id) for subject s, unless a forget
// came in since epoch. It reports whether it did.
func (c *cache) put(id crypto.SubjectKeyID, key *crypto.SubjectKey, s subjectRef, epoch uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if key != nil && epoch != c.epoch {
		return false
	}
	c.removeLocked(id)
	if key != nil {
		if old := c.bySubject[s]; old != nil {
			c.removeLocked(old.id) // the subject was forgotten and has a new key
		}
	}
	e := &entry{id: id, key: key, subj: s}
	e.elem = c.lru.PushFront(e)
	c.byID[id] = e
	if key != nil {
		c.bySubject[s] = e
	}
	for c.lru.Len() > c.max {
		c.removeLocked(c.lru.Back().Value.(*entry).id)
	}
	return true
}

// forget drops the key id and leaves a tombstone in its place.
func (c *cache) forget(id crypto.SubjectKeyID) {
	c.mu.Lock()
	c.epoch++
	c.mu.Unlock()
	c.put(id, nil, subjectRef{}, 0)
}

func (c *cache) removeLocked(id crypto.SubjectKeyID) {
	e := c.byID[id]
	if e == nil {
		return
	}
	c.lru.Remove(e.elem)
	delete(c.byID, id)
	if e.key != nil && c.bySubject[e.subj] == e {
		delete(c.bySubject, e.subj)
	}
}

// len is the number of entries, tombstones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
