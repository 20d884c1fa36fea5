package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testKEK "wraps" keys by prefixing them: the tests need a KMS that can
// tell its own wrapping from another's, not a real one.
const testKEK = "test-kek"

func wrap(k []byte) []byte { return append([]byte("wrapped:"), k...) }

func unwrap(kek string, w []byte) ([]byte, error) {
	k, ok := bytes.CutPrefix(w, []byte("wrapped:"))
	if kek != testKEK || !ok {
		return nil, errors.New("not wrapped by the test KEK")
	}
	return k, nil
}

func open(t *testing.T, file string, o Options) *Writer {
	t.Helper()
	key := NewKey()
	o.File, o.Key, o.Wrapped, o.KEK = file, key, wrap(key), testKEK
	if o.Buffer == 0 {
		o.Buffer = 64
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

var sess = &Session{ID: "1.2", BackendPID: 42, Role: "support", ApplicationName: "desk", Client: "127.0.0.1:5000", Database: "app"}

// writeLog writes n read records and closes the log.
func writeLog(t *testing.T, file string, n int) {
	t.Helper()
	w := open(t, file, Options{})
	for i := range n {
		ok, err := w.Admit()
		if !ok || err != nil {
			t.Fatalf("Admit: %v, %v", ok, err)
		}
		w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT email FROM customers WHERE id = " + strconv.Itoa(i),
			Command: "SELECT", Rows: 1, Columns: []Column{{Column: "public.customers.email", Outcome: "masked", Mask: "email", Values: 1, KeyVersions: []uint32{1}}}}, true)
	}
	w.Record(&Event{Session: sess, Time: time.Now(), Event: EventDenied, SQL: "SELECT card FROM customers", Command: "SELECT",
		Columns: []Column{{Column: "public.customers.card", Outcome: "denied", Access: "read"}}, SQLState: "42501"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func lines(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func rewrite(t *testing.T, file string, ls []string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLogVerifies(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, file, 5)
	ls := lines(t, file)
	if len(ls) != 8 { // open, 5 reads, 1 denial, close
		t.Fatalf("%d lines, want 8:\n%s", len(ls), strings.Join(ls, "\n"))
	}
	for _, want := range []string{`"event":"open"`, `"role":"support"`, `"fingerprint":"`, `"outcome":"masked"`, `"key_versions":[1]`, `"sqlstate":"42501"`} {
		if !strings.Contains(strings.Join(ls, "\n"), want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	// One fingerprint for statements that differ only in literals.
	if fp := between(ls[1], `"fingerprint":"`, `"`); fp == "" || fp != between(ls[2], `"fingerprint":"`, `"`) {
		t.Errorf("fingerprints %q and %q, want one for both", fp, between(ls[2], `"fingerprint":"`, `"`))
	}
	if strings.Contains(strings.Join(ls, "\n"), "WHERE id") {
		t.Error("the log holds statement text")
	}
	rep, err := Verify([]string{file}, unwrap, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 8 || rep.First != 1 || rep.Last != 8 || !rep.Closed || len(rep.Warnings) != 0 {
		t.Errorf("report %+v", rep)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

// TestTampering: each way of changing the log is found, at the line where
// it shows.
func TestTampering(t *testing.T) {
	dir := t.TempDir()
	orig := filepath.Join(dir, "orig.log")
	writeLog(t, orig, 5)
	good := lines(t, orig)
	forged := strings.Replace(good[3], `"values":1`, `"values":0`, 1)
	otherKey := func() string {
		// A record sealed with another key, in the right place of the chain.
		r, _, _, _ := parse([]byte(good[3]))
		line, _ := seal(nil, r, newMAC(NewKey()))
		return strings.TrimSuffix(string(line), "\n")
	}()
	for _, c := range []struct {
		name  string
		edit  func([]string) []string
		line  int
		wants string
	}{
		{"line deleted", func(l []string) []string { return append(l[:3:3], l[4:]...) }, 4, "seq 5 follows seq 3"},
		{"lines swapped", func(l []string) []string { l[3], l[4] = l[4], l[3]; return l }, 4, "seq 5 follows seq 3"},
		{"byte changed", func(l []string) []string { l[3] = forged; return l }, 4, "the mac does not match"},
		{"tail truncated", func(l []string) []string { return l[:6] }, 6, "ends at seq 6 without a close record"},
		{"line forged without the key", func(l []string) []string { l[3] = otherKey; return l }, 4, "the mac does not match"},
		{"mac replaced by the next line's", func(l []string) []string {
			l[3] = l[3][:len(l[3])-66] + l[4][len(l[4])-66:]
			return l
		}, 4, "the mac does not match"},
		{"first line removed", func(l []string) []string { return l[1:] }, 1, "must start with an open record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".log")
			rewrite(t, file, c.edit(append([]string(nil), good...)))
			_, err := Verify([]string{file}, unwrap, VerifyOptions{})
			var b *Broken
			if !errors.As(err, &b) || b.Line != c.line || !strings.Contains(b.Msg, c.wants) {
				t.Errorf("Verify: %v; want line %d: %s", err, c.line, c.wants)
			}
		})
	}
	// A cut in the middle of the last line.
	file := filepath.Join(dir, "cut.log")
	data, _ := os.ReadFile(orig)
	if err := os.WriteFile(file, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify([]string{file}, unwrap, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("cut mid-line: %v", err)
	}
	// The key does not unwrap under another KMS.
	if _, err := Verify([]string{orig}, func(string, []byte) ([]byte, error) { return nil, errors.New("denied") }, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "cannot unwrap") {
		t.Errorf("foreign KMS: %v", err)
	}
}

// TestRestartAndRotation: a restart continues the chain in the same file; a
// clean one verifies, one after a crash is reported unless allowed;
// rotation splits the chain across files given in any order.
func TestRestartAndRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.log")
	writeLog(t, file, 2)
	writeLog(t, file, 2) // a clean restart
	if rep, err := Verify([]string{file}, unwrap, VerifyOptions{}); err != nil || rep.Records != 10 || len(rep.Keys) != 2 {
		t.Fatalf("after a clean restart: %+v, %v", rep, err)
	}
	// A crash: the last run never wrote its close record.
	w := open(t, file, Options{})
	ok, _ := w.Admit()
	w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT 1"}, ok)
	for strings.Count(strings.Join(lines(t, file), "\n"), `"event":"read"`) < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	writeLog(t, file, 1)
	_, err := Verify([]string{file}, unwrap, VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), "without having closed the log") {
		t.Errorf("after a crash: %v", err)
	}
	rep, err := Verify([]string{file}, unwrap, VerifyOptions{AllowUnclean: true})
	if err != nil || len(rep.Warnings) != 1 {
		t.Errorf("after a crash, allowed: %+v, %v", rep, err)
	}
	w.Close() // the "crashed" writer: its file moved on

	rot := filepath.Join(dir, "rot.log")
	w = open(t, rot, Options{RotateSize: 2000})
	for i := range 40 {
		ok, err := w.Admit()
		if err != nil {
			t.Fatal(err)
		}
		w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT " + strconv.Itoa(i), Columns: []Column{{Column: "public.t.c", Outcome: "plaintext", Values: 1}}}, ok)
		time.Sleep(time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(rot + "*")
	if len(files) < 3 {
		t.Fatalf("rotation made %d files, want several", len(files))
	}
	// Reversed order: Verify sorts by the chain.
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
	}
	rep, err = Verify(files, unwrap, VerifyOptions{})
	if err != nil || rep.Files != len(files) || !rep.Closed {
		t.Fatalf("rotated log: %+v, %v", rep, err)
	}
	// A rotated file removed from the middle breaks the chain.
	var rest []string
	for _, f := range files {
		if f != files[len(files)/2] {
			rest = append(rest, f)
		}
	}
	if _, err := Verify(rest, unwrap, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "records were removed") {
		t.Errorf("a rotated file missing: %v", err)
	}
}

// TestFailure: while the file cannot be written, block refuses to admit
// (and recovers once it can write), continue admits and counts what is
// lost, which the log then says.
func TestFailure(t *testing.T) {
	for _, cont := range []bool{false, true} {
		t.Run("continue="+strconv.FormatBool(cont), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "audit.log")
			lost := 0
			w := open(t, file, Options{Continue: cont, Lost: func(n int) { lost += n }})
			w.f.Close() // every write fails until the writer reopens the file
			ok, err := w.Admit()
			if !ok || err != nil {
				t.Fatalf("first Admit: %v %v", ok, err)
			}
			w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT 1"}, true)
			deadline := time.Now().Add(5 * time.Second)
			for w.Failing() == "" && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if w.Failing() == "" {
				t.Fatal("the writer did not notice the failed write")
			}
			ok, err = w.Admit()
			if cont {
				if ok || err != nil {
					t.Errorf("continue: Admit while failing = %v, %v; want false, nil", ok, err)
				}
				w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT 2"}, ok)
			} else if err == nil || !strings.Contains(err.Error(), "audit log cannot be written") {
				t.Errorf("block: Admit while failing = %v, %v; want 58030", ok, err)
			}
			for w.Failing() != "" && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if w.Failing() != "" {
				t.Fatal("the writer did not recover")
			}
			ok, err = w.Admit()
			if !ok || err != nil {
				t.Fatalf("Admit after recovery: %v %v", ok, err)
			}
			w.Commit(&Event{Session: sess, Time: time.Now(), Event: EventRead, SQL: "SELECT 3"}, true)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify([]string{file}, unwrap, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(lines(t, file), "\n")
			if cont {
				if lost != 2 || !strings.Contains(text, `"event":"lost","lost":2`) || len(rep.Warnings) != 1 {
					t.Errorf("continue: lost %d, warnings %v:\n%s", lost, rep.Warnings, text)
				}
			} else if lost != 0 || strings.Count(text, `"event":"read"`) != 2 {
				t.Errorf("block: lost %d, want both admitted records written:\n%s", lost, text)
			}
		})
	}
}

// TestRecordJSON: a record reads back (encoding/json) as it was, whatever
// its strings hold.
func TestRecordJSON(t *testing.T) {
	tricky := "q\"b\\s\n\t\x01<&> 山田 \u2028 \xff end"
	r := &Record{Seq: 7, Time: "t", Event: EventRead, Instance: tricky, KEK: "k", KeyID: "id", WrappedKey: []byte{0, 1, 255}, After: AfterStart,
		Session: "s", BackendPID: 42, Role: tricky, ApplicationName: tricky, Client: "c", Database: "d", Fingerprint: "f", Command: "SELECT",
		Rows: -1, Columns: []Column{{Column: tricky, Outcome: "masked", Mask: "fixed:" + tricky, Access: "read", Values: 3, KeyVersions: []uint32{1, 4294967295}}, {Column: "x"}},
		SQLState: "42501", Incomplete: true, Lost: 9, Prev: "p"}
	line, mac := seal(nil, r, newMAC([]byte("key")))
	got, body, gotMAC, err := parse(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	want := *r
	want.Instance = strings.Replace(tricky, "\xff", "\ufffd", 1)
	want.Role, want.ApplicationName = want.Instance, want.Instance
	want.Columns = []Column{r.Columns[0], r.Columns[1]}
	want.Columns[0].Column, want.Columns[0].Mask = want.Instance, "fixed:"+want.Instance
	if !reflect.DeepEqual(got, &want) || gotMAC != mac || sign([]byte("key"), body) != mac {
		t.Errorf("read back\n%+v\nwant\n%+v", got, &want)
	}
}
