package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Subject says whose data the rows of a table are: the protected values of
// a row are encrypted under the data key of the row's subject (a customer,
// say), so that forgetting the subject (pgcloak forget) erases them all.
type Subject struct {
	// Column is the column of this table that holds the subject: the table's
	// own key (customers.id) or, with ForeignKey, a reference to the table
	// whose subjects these are (orders.customer_id).
	Column string `yaml:"column"`
	// Key is the keyring whose versions wrap the subject keys. It is rotated
	// every shred_window and its old versions destroyed, so it encrypts no
	// column and its Transit key serves no other keyring.
	Key string `yaml:"key"`
	// ForeignKey names the foreign key constraint through which Column refers
	// to another subject table: the rows are then that table's subjects' (one
	// key per customer, whatever the table), and forgetting a customer erases
	// their orders too.
	ForeignKey string `yaml:"foreign_key"`
	// ForgottenReads is what a read of a forgotten subject's value returns:
	// null (default) or error.
	ForgottenReads string `yaml:"forgotten_reads"`
}

// Retention is how long the rows of a table are kept.
type Retention struct {
	// Column is the timestamp (or date) the age of a row is counted from.
	Column string `yaml:"column"`
	// Keep is how long: a number and a unit (d, w, mon, y, or h), e.g. 3y, 90d.
	Keep string `yaml:"keep"`
	// Action is forget (the row's subject is forgotten once none of its rows
	// is newer; needs subjects:) or delete (the rows are deleted).
	Action string `yaml:"action"`
}

// Values of subjects.*.forgotten_reads and retention.*.action.
const (
	ForgottenNull   = "null"
	ForgottenError  = "error"
	RetentionForget = "forget"
	RetentionDelete = "delete"
)

// Defaults of the subject keys.
const (
	// DefaultShredWindow is shred_window's default: a forgotten subject
	// cannot be read from any backup taken before the forget after at most
	// this long.
	DefaultShredWindow = 30 * 24 * time.Hour
	// DefaultSubjectCache is subject_cache's default: subject keys held in
	// memory by one instance (about 1 kB each).
	DefaultSubjectCache = 20000
)

// ShredWindowOrDefault is shred_window, or its default when not set.
func (c *Config) ShredWindowOrDefault() time.Duration {
	if c.ShredWindow > 0 {
		return c.ShredWindow
	}
	return DefaultShredWindow
}

// SubjectCacheOrDefault is subject_cache, or its default when not set.
func (c *Config) SubjectCacheOrDefault() int {
	if c.SubjectCache > 0 {
		return c.SubjectCache
	}
	return DefaultSubjectCache
}

// SubjectKeyrings returns the keyrings that wrap subject keys (subjects.*.key).
func (c *Config) SubjectKeyrings() []string {
	var out []string
	for _, t := range sortedKeys(c.Subjects) {
		if k := c.Subjects[t].Key; k != "" && !contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

var keepSyntax = regexp.MustCompile(`^\s*([0-9]+)\s*([a-z]+)\s*$`)

var keepUnits = map[string]string{
	"h": "hours", "hour": "hours", "hours": "hours",
	"d": "days", "day": "days", "days": "days",
	"w": "weeks", "week": "weeks", "weeks": "weeks",
	"mon": "months", "month": "months", "months": "months",
	"y": "years", "year": "years", "years": "years",
}

// KeepInterval returns a retention's keep as a PostgreSQL interval ("3
// years"), which the database subtracts from now() as the calendar does.
func KeepInterval(keep string) (string, error) {
	m := keepSyntax.FindStringSubmatch(strings.ToLower(keep))
	if m == nil {
		return "", fmt.Errorf("%q is not a period; write a number and a unit, e.g. 3y, 18mon, 90d, 2w or 12h", keep)
	}
	unit, ok := keepUnits[m[2]]
	if !ok {
		return "", fmt.Errorf("unknown unit %q in %q; use h, d, w, mon or y", m[2], keep)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < 1 || n > 1000 {
		return "", fmt.Errorf("%q: the number must be from 1 to 1000", keep)
	}
	return fmt.Sprintf("%d %s", n, unit), nil
}

func checkSubjects(l *loader, c *Config) {
	wraps := map[string]string{} // keyring → a subjects table whose keys it wraps
	for _, tname := range sortedKeys(c.Subjects) {
		if k := c.Subjects[tname].Key; k != "" && wraps[k] == "" {
			wraps[k] = tname
		}
	}
	for _, tname := range sortedKeys(c.Tables) {
		if _, ok := c.Subjects[tname]; ok {
			continue // checked below
		}
		for _, cname := range sortedKeys(c.Tables[tname]) {
			if k := c.Tables[tname][cname].Key; wraps[k] != "" {
				l.problem("tables."+tname+"."+cname+".key", "keyring %q wraps the subject keys of %s: it loses its old versions every shred_window, which would make this column's values unreadable; give the column a keyring of its own", k, wraps[k])
			}
		}
	}
	for _, tname := range sortedKeys(c.Subjects) {
		s := c.Subjects[tname]
		key := "subjects." + tname
		if _, _, err := SplitTable(tname); err != nil {
			l.problem(key, "%v; write the table as schema.table, e.g. public.customers", err)
			continue
		}
		if s.Column == "" {
			l.problem(key, "column is required: the column of this table that holds the subject (e.g. column: id, or column: customer_id with foreign_key)")
		} else if _, protected := c.Tables[tname][s.Column]; protected {
			l.problem(key+".column", "%s is a protected column; the subject must be stored in plain (it picks the key), e.g. the table's id", s.Column)
		}
		switch s.ForgottenReads {
		case "", ForgottenNull, ForgottenError:
		default:
			l.problem(key+".forgotten_reads", "unknown value %q; use null (default: reads of a forgotten subject return NULL) or error", s.ForgottenReads)
		}
		if s.Key == "" {
			l.problem(key, "key is required: the keyring that wraps this table's subject keys (a keyring of keys: that encrypts no column of a table without subjects), e.g. key: subject-keys")
			continue
		}
		k, ok := c.Keys[s.Key]
		if !ok {
			l.problem(key+".key", "keyring %q is not in keys:; add keys: {%s: {transit_key: pgcloak-%s}}", s.Key, s.Key, s.Key)
			continue
		}
		if k.TransitKey != "" {
			for _, other := range sortedKeys(c.Keys) {
				if other != s.Key && c.Keys[other].TransitKey == k.TransitKey {
					l.problem(key+".key", "keyring %q shares Transit key %q with keyring %q; the Transit key of subject keys is trimmed every shred_window, which would destroy %q's keys: give it a Transit key of its own", s.Key, k.TransitKey, other, other)
				}
			}
		}
		for _, cname := range sortedKeys(c.Tables[tname]) {
			col := c.Tables[tname][cname]
			ck := "tables." + tname + "." + cname
			if col.Key != "" && col.Key != s.Key {
				l.problem(ck+".key", "%s has subjects (subjects.%s), so its columns are encrypted under subject keys wrapped by keyring %q; write key: %s", tname, tname, s.Key, s.Key)
			}
			if col.Mode == ModeDeterministic {
				l.problem(ck+".mode", "a subject-keyed column cannot be deterministic: each subject has its own key, so equal values of two subjects differ and equality search would silently miss rows; "+
					"use mode: randomized (pgcloak forget erases it), or keep the searchable value in a table without subjects (forget does not erase it there)")
			}
			if col.State == StateMigrating {
				l.problem(ck+".state", "pgcloak migrate does not encrypt under subject keys yet; a subject-keyed column must be state: encrypted (write its values through pgcloak)")
			}
		}
	}
	if c.ShredWindow != 0 && (c.ShredWindow < time.Second || c.ShredWindow > 10*365*24*time.Hour) {
		l.problem("shred_window", "must be from 1s to 10 years, got %s; the default is 30d", c.ShredWindow)
	}
	if c.SubjectCache < 0 || c.SubjectCache > 10_000_000 {
		l.problem("subject_cache", "must be from 1 to 10000000 subject keys, got %d; the default is %d", c.SubjectCache, DefaultSubjectCache)
	}
	checkRetention(l, c)
}

func checkRetention(l *loader, c *Config) {
	for _, tname := range sortedKeys(c.Retention) {
		r := c.Retention[tname]
		key := "retention." + tname
		if _, _, err := SplitTable(tname); err != nil {
			l.problem(key, "%v; write the table as schema.table, e.g. public.customers", err)
			continue
		}
		if r.Column == "" {
			l.problem(key, "column is required: the timestamp or date a row's age is counted from, e.g. column: created_at")
		} else if _, protected := c.Tables[tname][r.Column]; protected {
			l.problem(key+".column", "%s is a protected column, which the database cannot compare; count the age from a plain timestamp column", r.Column)
		}
		if r.Keep == "" {
			l.problem(key, "keep is required: how long rows are kept, e.g. keep: 3y")
		} else if _, err := KeepInterval(r.Keep); err != nil {
			l.problem(key+".keep", "%v", err)
		}
		switch r.Action {
		case RetentionForget:
			if _, ok := c.Subjects[tname]; !ok {
				l.problem(key+".action", "forget needs the table's subject: add subjects: {%s: {column: …, key: …}}, or use action: delete", tname)
			}
		case RetentionDelete:
		case "":
			l.problem(key, "action is required: forget (erase the subject once none of its rows is newer) or delete (delete the rows)")
		default:
			l.problem(key+".action", "unknown action %q; use forget or delete", r.Action)
		}
	}
	if c.RetentionSchedule != 0 {
		if c.RetentionSchedule < time.Minute || c.RetentionSchedule > 30*24*time.Hour {
			l.problem("retention_schedule", "must be from 1min to 30d (or 0: serve does not run retention), got %s", c.RetentionSchedule)
		} else if len(c.Retention) == 0 {
			l.problem("retention_schedule", "is set but retention: names no table; remove it or add retention rules")
		}
	}
}
