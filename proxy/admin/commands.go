package admin

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/pgcloak/pgcloak/config"
)

// commandList is what an unknown command is told.
const commandList = "SHOW CLIENTS | SERVERS | HOSTS | DATABASES | STATS | RULES | KEYS | CONFIG | VERSION, RELOAD, PAUSE [db], RESUME [db], KILL client_id | db"

// query runs the statements of a simple Query; an error ends it, as
// PostgreSQL skips the rest of a multi-statement Query.
func (s *consoleSession) query(sql string) {
	stmts := splitStatements(sql)
	if len(stmts) == 0 {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	for _, words := range stmts {
		if !s.run(words) {
			return
		}
	}
}

// run executes one command; false after an error.
func (s *consoleSession) run(words []string) bool {
	verb := strings.ToUpper(words[0])
	args := words[1:]
	switch {
	case verb == "SHOW" && len(args) == 1:
		return s.show(strings.ToUpper(args[0]))
	case verb == "RELOAD" && len(args) == 0:
		return s.reload()
	case verb == "PAUSE" && len(args) <= 1:
		s.pause(first(args))
		return true
	case verb == "RESUME" && len(args) <= 1:
		db := first(args)
		s.c.Server.Resume(db)
		s.log.Info("console: RESUME", zap.String("database", orAll(db)))
		s.done("RESUME")
		return true
	case verb == "KILL" && len(args) == 1:
		id, err := strconv.ParseUint(args[0], 10, 64)
		if err != nil {
			n := s.c.Server.KillDatabase(args[0])
			s.log.Info("console: KILL", zap.String("database", args[0]), zap.Int("sessions", n))
			s.done("KILL " + strconv.Itoa(n))
			return true
		}
		if !s.c.Server.Kill(id) {
			s.error(pgerrcode.UndefinedObject, fmt.Sprintf("no client session %d (SHOW CLIENTS lists them)", id))
			return false
		}
		s.log.Info("console: KILL", zap.Uint64("client_id", id))
		s.done("KILL")
		return true
	}
	s.error(pgerrcode.SyntaxError, fmt.Sprintf("unknown command %q; the console knows %s", strings.Join(words, " "), commandList))
	return false
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func orAll(db string) string {
	if db == "" {
		return "(all)"
	}
	return db
}

func (s *consoleSession) show(what string) bool {
	switch what {
	case "CLIENTS":
		var rows [][]string
		for _, c := range s.c.Server.Clients() {
			rows = append(rows, []string{strconv.FormatUint(c.ID, 10), c.User, c.Database, c.ApplicationName, c.ClientAddr,
				yesNo(c.TLS), c.State, yesNo(c.Encrypting), stamp(c.Since)})
		}
		s.table("SHOW", []string{"id", "user", "database", "application_name", "client_addr", "tls", "state", "encrypting", "since"}, rows)
	case "SERVERS":
		var rows [][]string
		for _, c := range s.c.Server.Clients() {
			rows = append(rows, []string{strconv.FormatUint(c.ID, 10), c.User, c.Database, c.Upstream, strconv.FormatUint(uint64(c.BackendPID), 10), c.State})
		}
		s.table("SHOW", []string{"client_id", "user", "database", "upstream", "backend_pid", "state"}, rows)
	case "HOSTS":
		var rows [][]string
		for _, h := range s.c.Server.HostInfo() {
			checked := ""
			if !h.Checked.IsZero() {
				checked = stamp(h.Checked)
			}
			rows = append(rows, []string{h.Addr, h.Role, yesNo(h.ReadOnly), checked, h.Error})
		}
		s.table("SHOW", []string{"host", "role", "read_only", "checked", "error"}, rows)
	case "DATABASES":
		s.databases()
	case "STATS":
		return s.stats()
	case "RULES":
		var rows [][]string
		if s.c.Rules != nil {
			for _, r := range s.c.Rules() {
				rows = append(rows, []string{r.Table, r.Column, r.Type, r.Mode, r.Key, r.State, r.Backstop, r.Catalog})
			}
		}
		s.table("SHOW", []string{"table", "column", "type", "mode", "key", "state", "backstop", "catalog"}, rows)
	case "KEYS":
		var rows [][]string
		if s.c.Keys != nil {
			for _, k := range s.c.Keys() {
				vs := make([]string, len(k.Versions))
				for i, v := range k.Versions {
					vs[i] = strconv.FormatUint(uint64(v), 10)
				}
				refreshed := ""
				if !k.Refreshed.IsZero() {
					refreshed = stamp(k.Refreshed)
				}
				rows = append(rows, []string{k.Name, k.KEK, strconv.FormatUint(uint64(k.Active), 10), strings.Join(vs, ","), refreshed})
			}
		}
		s.table("SHOW", []string{"keyring", "kek", "active_version", "versions", "refreshed"}, rows)
	case "CONFIG":
		s.table("SHOW", []string{"key", "value"}, configRows(s.c.Server.Config()))
	case "VERSION":
		s.table("SHOW", []string{"version"}, [][]string{{"pgcloak " + s.c.Version}})
	default:
		s.error(pgerrcode.SyntaxError, fmt.Sprintf("unknown command \"SHOW %s\"; the console knows %s", what, commandList))
		return false
	}
	return true
}

// databases lists every database with sessions or a pause.
func (s *consoleSession) databases() {
	type db struct {
		clients int
		paused  bool
	}
	dbs := map[string]*db{}
	for _, c := range s.c.Server.Clients() {
		if dbs[c.Database] == nil {
			dbs[c.Database] = &db{}
		}
		dbs[c.Database].clients++
	}
	paused, all := s.c.Server.Paused()
	for _, name := range paused {
		if dbs[name] == nil {
			dbs[name] = &db{}
		}
		dbs[name].paused = true
	}
	names := make([]string, 0, len(dbs))
	for n := range dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	var rows [][]string
	for _, n := range names {
		rows = append(rows, []string{n, strconv.Itoa(dbs[n].clients), yesNo(dbs[n].paused || all)})
	}
	s.table("SHOW", []string{"database", "clients", "paused"}, rows)
}

// stats lists every pgcloak_* sample of the metrics registry.
func (s *consoleSession) stats() bool {
	if s.c.Metrics == nil {
		s.table("SHOW", []string{"metric", "labels", "value"}, nil)
		return true
	}
	mfs, err := s.c.Metrics.Gather()
	if err != nil {
		s.error(pgerrcode.InternalError, "reading the metrics: "+err.Error())
		return false
	}
	var rows [][]string
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "pgcloak_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			ls := strings.Join(labels, ",")
			for _, v := range sampleValues(name, m) {
				rows = append(rows, []string{v[0], ls, v[1]})
			}
		}
	}
	s.table("SHOW", []string{"metric", "labels", "value"}, rows)
	return true
}

// sampleValues are the (name, value) pairs of one metric: its value, or a
// histogram's or summary's count and sum.
func sampleValues(name string, m *dto.Metric) [][2]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	switch {
	case m.Counter != nil:
		return [][2]string{{name, f(m.Counter.GetValue())}}
	case m.Gauge != nil:
		return [][2]string{{name, f(m.Gauge.GetValue())}}
	case m.Histogram != nil:
		return [][2]string{{name + "_count", strconv.FormatUint(m.Histogram.GetSampleCount(), 10)}, {name + "_sum", f(m.Histogram.GetSampleSum())}}
	case m.Summary != nil:
		return [][2]string{{name + "_count", strconv.FormatUint(m.Summary.GetSampleCount(), 10)}, {name + "_sum", f(m.Summary.GetSampleSum())}}
	case m.Untyped != nil:
		return [][2]string{{name, f(m.Untyped.GetValue())}}
	}
	return nil
}

func (s *consoleSession) reload() bool {
	if s.c.Reload == nil {
		s.error(pgerrcode.FeatureNotSupported, "this pgcloak has no configuration file to reload")
		return false
	}
	s.log.Info("console: RELOAD")
	if err := s.c.Reload(); err != nil {
		s.error(pgerrcode.ConfigFileError, "configuration not reloaded, the running one stays: "+err.Error())
		return false
	}
	s.done("RELOAD")
	return true
}

// pause pauses db and waits until no session of it is inside a
// transaction, or PauseWait has passed.
func (s *consoleSession) pause(db string) {
	srv := s.c.Server
	srv.Pause(db)
	s.log.Info("console: PAUSE", zap.String("database", orAll(db)))
	wait := s.c.PauseWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		busy := srv.Unpaused()
		if len(busy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			ids := make([]string, len(busy))
			for i, c := range busy {
				ids[i] = fmt.Sprintf("%d (%s)", c.ID, c.State)
			}
			s.notice("WARNING", fmt.Sprintf("paused, but after %s these client sessions are still inside a transaction: %s; "+
				"each is held when its transaction ends (SHOW CLIENTS shows state paused)", wait, strings.Join(ids, ", ")))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.done("PAUSE")
}

// splitStatements splits a Query into statements at ';' and each into
// words: runs of non-space characters, "double-quoted" (a name, "" for a
// quote) or 'single-quoted'. Empty statements are dropped.
func splitStatements(sql string) [][]string {
	var stmts [][]string
	var words []string
	var w strings.Builder
	inWord := false
	end := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(sql); i++ {
		ch := sql[i]
		switch {
		case ch == '"' || ch == '\'':
			inWord = true
			for i++; i < len(sql); i++ {
				if sql[i] == ch {
					if i+1 < len(sql) && sql[i+1] == ch {
						w.WriteByte(ch)
						i++
						continue
					}
					break
				}
				w.WriteByte(sql[i])
			}
		case ch == ';':
			end()
			if len(words) > 0 {
				stmts = append(stmts, words)
			}
			words = nil
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			end()
		default:
			inWord = true
			w.WriteByte(ch)
		}
	}
	end()
	if len(words) > 0 {
		stmts = append(stmts, words)
	}
	return stmts
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// stamp formats a time as PostgreSQL prints a timestamptz in UTC.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000Z07:00") }

// secretDSN matches a password in a libpq keyword/value string or URL.
var secretDSN = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)|(://[^:/@]*:)[^@/]*@`)

// configRows flattens cfg into dotted keys and values, passwords hidden.
func configRows(cfg *config.Config) [][]string {
	var rows [][]string
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), prefix)
			}
			return
		case reflect.Struct:
			if _, ok := v.Interface().(fmt.Stringer); !ok {
				t := v.Type()
				for i := range t.NumField() {
					name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
					if name == "" || name == "-" {
						continue
					}
					walk(v.Field(i), join(prefix, name))
				}
				return
			}
		case reflect.Map:
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
			for _, k := range keys {
				walk(v.MapIndex(k), join(prefix, k.String()))
			}
			return
		case reflect.Slice:
			parts := make([]string, v.Len())
			for i := range parts {
				parts[i] = fmt.Sprint(v.Index(i).Interface())
			}
			rows = append(rows, []string{prefix, strings.Join(parts, ", ")})
			return
		}
		val := fmt.Sprint(v.Interface())
		if prefix == "admin_dsn" || prefix == "upstream" {
			val = secretDSN.ReplaceAllString(val, "${1}${3}(hidden)")
		}
		if strings.HasSuffix(prefix, ".role_id") && val != "" {
			val = "(hidden)"
		}
		rows = append(rows, []string{prefix, val})
	}
	walk(reflect.ValueOf(cfg), "")
	return rows
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
