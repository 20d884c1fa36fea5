package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

// startPgcloakEnc runs pgcloak with the tables of encryption_setup.sql
// protected, and with access rules and the audit log when access is set.
// The first such target makes the keys (keys init) and fills the protected
// tables through itself with the same rows as their plaintext twins. It
// needs -setup bench/sql/encryption_setup.sql.
func (s *servers) startPgcloakEnc(ctx context.Context, name string, access bool) (int, error) {
	dir := s.env.TempDir()
	first := s.encYAML == ""
	if first {
		keyFile := filepath.Join(dir, "master.key")
		if err := localkms.GenerateKeyFile(keyFile); err != nil {
			return 0, err
		}
		s.encYAML = fmt.Sprintf(encryptionYAML, s.pg.SocketDir, s.pg.Port, benchUser, benchDB, keyFile)
		conf := filepath.Join(dir, "keys.yaml")
		yaml := fmt.Sprintf("upstream: \"host=%s port=%d sslmode=disable\"\n%s", s.upstreamHost(), s.pg.Port, s.encYAML)
		if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
			return 0, err
		}
		if out, err := exec.CommandContext(ctx, s.pgcloakBin, "keys", "init", "--config", conf, "--log-level", "warn").CombinedOutput(); err != nil {
			return 0, fmt.Errorf("pgcloak keys init: %w\n%s", err, out)
		}
		// The CHECK backstops, without which pgcloak does not serve.
		if out, err := exec.CommandContext(ctx, s.pgcloakBin, "protect", "--config", conf, "--apply", "--log-level", "warn").CombinedOutput(); err != nil {
			return 0, fmt.Errorf("pgcloak protect --apply: %w\n%s", err, out)
		}
	}
	extra := s.encYAML
	if access {
		extra += fmt.Sprintf(accessYAML, benchUser, filepath.Join(dir, "audit.log"))
	}
	port, err := s.startPgcloak(ctx, name, extra)
	if err != nil {
		return port, err
	}
	c, err := connectReady(ctx, name, port)
	if err != nil {
		return port, err
	}
	defer c.Close(ctx)
	if !first {
		return port, nil
	}
	return port, fillEncrypted(ctx, c)
}

// connectReady connects through pgcloak once it has loaded its keys.
func connectReady(ctx context.Context, name string, port int) (*pgx.Conn, error) {
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not ready: %w", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fillEncrypted copies the plaintext twins into the protected tables
// through pgcloak (c).
func fillEncrypted(ctx context.Context, c *pgx.Conn) error {
	for _, t := range []struct {
		table string
		n     int
	}{{"t_enc", 10000}, {"big_enc", 100000}} {
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

// measureCopy loads rows rows with COPY FROM STDIN (text format) into
// copy_plain and copy_enc through pgcloak-enc, alternating, rounds times,
// and prints the median rates and their ratio. For scale it also loads,
// straight into PostgreSQL, the plaintext rows into copy_plain and the
// ciphertext pgcloak stored (read back with COPY TO) into copy_enc: the
// ratio of those two is what storing ciphertext costs PostgreSQL itself,
// the ceiling of any encrypting proxy's ratio.
func measureCopy(ctx context.Context, directPort, port, rows, rounds int) error {
	connect := func(port int) (*pgx.Conn, error) {
		return pgx.Connect(ctx, fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB))
	}
	c, err := connect(port)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	d, err := connect(directPort)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	for _, format := range []string{"text", "binary"} {
		if err := measureCopyFormat(ctx, c, d, format, rows, rounds); err != nil {
			return err
		}
	}
	return nil
}

// measureCopyFormat is measureCopy in one COPY format.
func measureCopyFormat(ctx context.Context, c, d *pgx.Conn, format string, rows, rounds int) error {
	var data, cipher bytes.Buffer
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
	stmt := func(table string) string { return "COPY " + table + " FROM STDIN (FORMAT " + format + ")" }
	load := func(conn *pgx.Conn, table string, in []byte) (float64, error) {
		if _, err := conn.Exec(ctx, "TRUNCATE "+table); err != nil {
			return 0, err
		}
		start := time.Now()
		if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(in), stmt(table)); err != nil {
			return 0, fmt.Errorf("COPY %s: %w", table, err)
		}
		return float64(rows) / time.Since(start).Seconds(), nil
	}
	runs := []struct {
		name  string
		conn  *pgx.Conn
		table string
		data  *bytes.Buffer
	}{
		{"pgcloak plaintext", c, "copy_plain", &data},
		{"pgcloak protected", c, "copy_enc", &data},
		{"direct plaintext", d, "copy_plain", &data},
		{"direct ciphertext", d, "copy_enc", &cipher},
	}
	rates := map[string][]float64{}
	for range rounds {
		for _, r := range runs {
			if r.data.Len() == 0 {
				// The ciphertext pgcloak stored in the run before.
				if _, err := d.PgConn().CopyTo(ctx, r.data, "COPY copy_enc TO STDOUT (FORMAT "+format+")"); err != nil {
					return err
				}
			}
			rate, err := load(r.conn, r.table, r.data.Bytes())
			if err != nil {
				return err
			}
			rates[r.name] = append(rates[r.name], rate)
		}
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	m := func(name string) float64 { return median(rates[name]) }
	fmt.Printf("\nCOPY FROM STDIN (FORMAT %s), %d rows x 3 text columns, median rows/s of %d:\n", format, rows, rounds)
	fmt.Printf("  through pgcloak: plaintext %.0f, protected %.0f, ratio %.2f\n",
		m("pgcloak plaintext"), m("pgcloak protected"), m("pgcloak protected")/m("pgcloak plaintext"))
	fmt.Printf("  directly: plaintext %.0f, the same rows as pgcloak's ciphertext %.0f, ratio %.2f (PostgreSQL's own cost of the larger values)\n",
		m("direct plaintext"), m("direct ciphertext"), m("direct ciphertext")/m("direct plaintext"))
	return nil
}
