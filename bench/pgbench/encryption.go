package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcloak/pgcloak/crypto/localkms"
)

// encryptionYAML protects the *_enc tables of bench/sql/encryption_setup.sql.
// The data keys are wrapped by a local key file: the benchmark measures the
// hot path, which never calls the KMS (Vault or not).
const encryptionYAML = `admin_dsn: "host=%s port=%d user=%s dbname=%s"
kms:
  local: {key_file: %s}
keys:
  pii: {}
tables:
  public.t_enc:   {full_name: {type: text, key: pii}, email: {type: text, key: pii}, phone: {type: text, key: pii}}
  public.big_enc: {full_name: {type: text, key: pii}, email: {type: text, key: pii}, phone: {type: text, key: pii}}
  public.ins_enc: {full_name: {type: text, key: pii}, email: {type: text, key: pii}, phone: {type: text, key: pii}}
  public.det_enc: {phone: {type: text, key: pii, mode: deterministic}}
  public.copy_enc: {full_name: {type: text, key: pii}, email: {type: text, key: pii}, phone: {type: text, key: pii}}
`

// accessYAML adds access rules and the audit log (target pgcloak-access):
// the benchmark's role reads plaintext by its rule, another role would see
// masks, and every statement that decrypts is recorded.
const accessYAML = `access:
  default: deny
  roles:
    %s: {read: plaintext, write: true}
    support: {read: masked, mask: "null"}
  tables:
    public.t_enc.email: {support: email}
audit:
  file: %s
`

// startPgcloakEnc runs variant v of pgcloak, named name, with the tables of
// encryption_setup.sql protected, and with access rules and the audit log
// when access is set. The first variant creates the keys (keys
// init) and the backstops (protect --apply), and fills the protected tables through pgcloak with the same rows as
// their plaintext twins; later variants share both. It needs -setup
// bench/sql/encryption_setup.sql.
func (s *servers) startPgcloakEnc(ctx context.Context, name string, v variant, access bool) (port, pid int, err error) {
	if s.encYAML == "" {
		dir := s.env.TempDir()
		keyFile := filepath.Join(dir, "master.key")
		if err := localkms.GenerateKeyFile(keyFile); err != nil {
			return 0, 0, err
		}
		extra := fmt.Sprintf(encryptionYAML, s.pg.SocketDir, s.pg.Port, benchUser, benchDB, keyFile)
		conf := filepath.Join(dir, "keys.yaml")
		yaml := fmt.Sprintf("upstream: \"host=%s port=%d sslmode=disable\"\n%s", s.upstreamHost(), s.pg.Port, extra)
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			return 0, 0, err
		}
		if out, err := exec.CommandContext(ctx, v.bin, "keys", "init", "--config", conf, "--log-level", "warn").CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("pgcloak keys init: %w\n%s", err, out)
		}
		// The backstops (CHECK constraints) that serve requires; the
		// tables are empty, so they validate at once.
		if out, err := exec.CommandContext(ctx, v.bin, "protect", "--apply", "--config", conf, "--log-level", "warn").CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("pgcloak protect --apply: %w\n%s", err, out)
		}
		s.encYAML = extra
	}
	extra := s.encYAML
	if access {
		extra += fmt.Sprintf(accessYAML, benchUser, filepath.Join(s.env.TempDir(), "audit.log"))
	}
	port, pid, err = s.startPgcloak(ctx, name, v, extra)
	if err != nil {
		return 0, 0, err
	}
	if err := waitReady(ctx, port); err != nil {
		return 0, 0, err
	}
	if !s.encFilled {
		if err := fillEncrypted(ctx, port); err != nil {
			return 0, 0, err
		}
		s.encFilled = true
	}
	return port, pid, nil
}

// waitReady waits until pgcloak on port has loaded its keys and serves the
// protected database.
func waitReady(ctx context.Context, port int) error {
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := connect(ctx, port)
		if err == nil {
			return c.Close(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcloak-enc not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// connect opens a pgx connection to benchDB through port.
func connect(ctx context.Context, port int) (*pgx.Conn, error) {
	return pgx.Connect(ctx, fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB))
}

// bigRows is the size of big_plain and big_enc (encryption_setup.sql).
const bigRows = 100000

// perValueWorkloads are the pairs of scripts whose CPU per row gives
// pgcloak's CPU per protected value: rows per transaction and protected
// values per row.
var perValueWorkloads = []struct {
	plain, protected string
	rows, values     int
}{{"scan_plain.sql", "scan_enc.sql", bigRows, 3}}

// fillEncrypted copies the plaintext twins into the protected tables
// through pgcloak.
func fillEncrypted(ctx context.Context, port int) error {
	c, err := connect(ctx, port)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, t := range []struct {
		table string
		n     int
	}{{"t_enc", 10000}, {"big_enc", bigRows}} {
		b := &pgx.Batch{}
		for i := 1; i <= t.n; i++ {
			b.Queue("INSERT INTO "+t.table+" VALUES ($1, $2, $3, $4)", i, "Customer Name "+strconv.Itoa(i),
				"customer"+strconv.Itoa(i)+"@example.com", fmt.Sprintf("+81-3-5555-%04d", i))
			if b.Len() == 5000 || i == t.n {
				if err := c.SendBatch(ctx, b).Close(); err != nil {
					return fmt.Errorf("filling %s through pgcloak: %w", t.table, err)
				}
				b = &pgx.Batch{}
			}
		}
	}
	b := &pgx.Batch{}
	for i := 1; i <= 10000; i++ {
		b.Queue("INSERT INTO det_enc VALUES ($1, $2)", i, strconv.Itoa(i))
	}
	if err := c.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("filling det_enc through pgcloak: %w", err)
	}
	return nil
}

// copyResult is the COPY FROM measurement of one format.
type copyResult struct {
	Format string `json:"format"`
	Rows   int    `json:"rows"`
	// Rate holds rows/s per run, by run name: "direct plaintext", "direct
	// ciphertext", and "TARGET plaintext" / "TARGET protected" per
	// pgcloak-enc target.
	Rate map[string][]float64 `json:"rows_per_s"`
	// CPU holds the pgcloak process's CPU time per row (ns), by run name.
	CPU map[string][]float64 `json:"cpu_ns_per_row"`
	// BackendCPU holds the CPU time per row (ns) of the PostgreSQL backend
	// that ran the COPY, by run name: what ingesting the rows cost
	// PostgreSQL itself, next to pgcloak's cost for the same rows.
	BackendCPU map[string][]float64 `json:"backend_cpu_ns_per_row"`
}

// measureCopy loads rows rows with COPY FROM STDIN, in text and in binary
// format, into copy_plain and copy_enc through each pgcloak-enc target,
// alternating, rounds times. For scale it also loads, straight into
// PostgreSQL, the plaintext rows into copy_plain and the ciphertext pgcloak
// stored (read back with COPY TO) into copy_enc: the rate of the latter is
// the rate at which PostgreSQL itself ingests the same ciphertext, the
// ceiling of any encrypting proxy.
func measureCopy(ctx context.Context, directPort int, targets []target, rows, rounds int, perfDir string) ([]copyResult, error) {
	d, err := connect(ctx, directPort)
	if err != nil {
		return nil, err
	}
	defer d.Close(ctx)
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	var encTargets []target
	for _, t := range targets {
		if t.Kind == "pgcloak-enc" {
			c, err := connect(ctx, t.Port)
			if err != nil {
				return nil, err
			}
			conns = append(conns, c)
			encTargets = append(encTargets, t)
		}
	}
	var out []copyResult
	for _, format := range []string{"text", "binary"} {
		r, err := measureCopyFormat(ctx, d, encTargets, conns, format, rows, rounds, perfDir)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// copyInput returns rows rows of copy_plain in a COPY format.
func copyInput(format string, rows int) []byte {
	var data bytes.Buffer
	if format == "binary" {
		data.WriteString("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	}
	for i := 1; i <= rows; i++ {
		fields := []string{fmt.Sprintf("Customer Name %d", i), fmt.Sprintf("customer%d@example.com", i), fmt.Sprintf("+81-3-5555-%04d", i%10000)}
		if format == "text" {
			fmt.Fprintf(&data, "%d\t%s\t%s\t%s\n", i, fields[0], fields[1], fields[2])
			continue
		}
		data.Write(binary.BigEndian.AppendUint16(nil, 4))
		data.Write(binary.BigEndian.AppendUint32(nil, 4))
		data.Write(binary.BigEndian.AppendUint32(nil, uint32(i)))
		for _, f := range fields {
			data.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
			data.WriteString(f)
		}
	}
	if format == "binary" {
		data.Write([]byte{0xff, 0xff})
	}
	return data.Bytes()
}

// measureCopyFormat is measureCopy in one COPY format.
func measureCopyFormat(ctx context.Context, d *pgx.Conn, targets []target, conns []*pgx.Conn, format string, rows, rounds int, perfDir string) (copyResult, error) {
	data := copyInput(format, rows)
	var cipher bytes.Buffer
	stmt := func(table string) string { return "COPY " + table + " FROM STDIN (FORMAT " + format + ")" }
	type copyRun struct {
		name  string
		conn  *pgx.Conn
		pid   int // of the pgcloak it goes through
		table string
		data  func() []byte
	}
	plain := func() []byte { return data }
	var runs []copyRun
	for i, t := range targets {
		runs = append(runs,
			copyRun{t.Name + " plaintext", conns[i], t.PID, "copy_plain", plain},
			copyRun{t.Name + " protected", conns[i], t.PID, "copy_enc", plain})
	}
	runs = append(runs,
		copyRun{"direct plaintext", d, 0, "copy_plain", plain},
		copyRun{"direct ciphertext", d, 0, "copy_enc", cipher.Bytes})
	res := copyResult{Format: format, Rows: rows, Rate: map[string][]float64{}, CPU: map[string][]float64{}, BackendCPU: map[string][]float64{}}
	for round := range rounds {
		for _, r := range runs {
			if r.table == "copy_enc" && r.pid == 0 && cipher.Len() == 0 {
				// The ciphertext pgcloak stored in the run before.
				if _, err := d.PgConn().CopyTo(ctx, &cipher, "COPY copy_enc TO STDOUT (FORMAT "+format+")"); err != nil {
					return res, err
				}
			}
			if _, err := r.conn.Exec(ctx, "TRUNCATE "+r.table); err != nil {
				return res, err
			}
			var backend int
			if err := r.conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
				return res, err
			}
			cpu, err := startCPU(r.pid)
			if err != nil {
				return res, err
			}
			backendCPU, err := startCPU(backend)
			if err != nil {
				return res, err
			}
			stopPerf, err := startPerf(ctx, perfDir, target{PID: r.pid}, fmt.Sprintf("copy-%s-%s-%d", format, r.name, round+1))
			if err != nil {
				return res, err
			}
			start := time.Now()
			_, err = r.conn.PgConn().CopyFrom(ctx, bytes.NewReader(r.data()), stmt(r.table))
			elapsed := time.Since(start)
			stopPerf()
			if err != nil {
				return res, fmt.Errorf("COPY %s (%s): %w", r.table, r.name, err)
			}
			used, err := cpu.used()
			if err != nil {
				return res, err
			}
			usedBackend, err := backendCPU.used()
			if err != nil {
				return res, err
			}
			res.BackendCPU[r.name] = append(res.BackendCPU[r.name], float64(usedBackend.Nanoseconds())/float64(rows))
			res.Rate[r.name] = append(res.Rate[r.name], float64(rows)/elapsed.Seconds())
			if r.pid != 0 {
				res.CPU[r.name] = append(res.CPU[r.name], float64(used.Nanoseconds())/float64(rows))
			}
		}
	}
	return res, nil
}

// write prints the medians and the ratios that matter: protected through
// pgcloak against PostgreSQL's own ingest of the same ciphertext, and
// against plaintext through the same pgcloak.
func (r copyResult) write(out io.Writer, targets []target) {
	m := func(name string) float64 { return median(r.Rate[name]) }
	fmt.Fprintf(out, "\nCOPY FROM STDIN (FORMAT %s), %d rows x 3 text columns, median rows/s:\n", r.Format, r.Rows)
	fmt.Fprintf(out, "  directly: plaintext %.0f, pgcloak's ciphertext %.0f (%.2f: PostgreSQL's own cost of the larger values); backend CPU %.0f / %.0f ns per row\n",
		m("direct plaintext"), m("direct ciphertext"), m("direct ciphertext")/m("direct plaintext"),
		median(r.BackendCPU["direct plaintext"]), median(r.BackendCPU["direct ciphertext"]))
	for _, t := range targets {
		if t.Kind != "pgcloak-enc" {
			continue
		}
		p, e := t.Name+" plaintext", t.Name+" protected"
		fmt.Fprintf(out, "  %s: plaintext %.0f, protected %.0f (%.2f); protected / direct ciphertext %.2f; CPU %.0f / %.0f ns per row\n",
			t.Name, m(p), m(e), m(e)/m(p), m(e)/m("direct ciphertext"), median(r.CPU[p]), median(r.CPU[e]))
		// Where the two do not share cores, the slower of PostgreSQL's
		// ingest and pgcloak's encryption sets the rate: pgcloak keeps up
		// with PostgreSQL while its CPU per row is below the backend's.
		fmt.Fprintf(out, "    CPU per protected row: pgcloak %.0f ns, PostgreSQL's backend %.0f ns (ingesting the ciphertext directly: %.0f ns): pgcloak / backend %.2f\n",
			median(r.CPU[e]), median(r.BackendCPU[e]), median(r.BackendCPU["direct ciphertext"]), median(r.CPU[e])/median(r.BackendCPU["direct ciphertext"]))
	}
}
