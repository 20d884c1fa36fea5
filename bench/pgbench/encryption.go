package main

import (
	"bytes"
	"context"
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

// startPgcloakEnc runs pgcloak with the tables of encryption_setup.sql
// protected (keys init first), then fills the protected tables through it
// with the same rows as their plaintext twins. It needs -setup
// bench/sql/encryption_setup.sql.
func (s *servers) startPgcloakEnc(ctx context.Context) (int, error) {
	dir := s.env.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	if err := localkms.GenerateKeyFile(keyFile); err != nil {
		return 0, err
	}
	extra := fmt.Sprintf(encryptionYAML, s.pg.SocketDir, s.pg.Port, benchUser, benchDB, keyFile)
	conf := filepath.Join(dir, "keys.yaml")
	yaml := fmt.Sprintf("upstream: \"host=%s port=%d sslmode=disable\"\n%s", s.upstreamHost(), s.pg.Port, extra)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		return 0, err
	}
	if out, err := exec.CommandContext(ctx, s.pgcloakBin, "keys", "init", "--config", conf, "--log-level", "warn").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgcloak keys init: %w\n%s", err, out)
	}
	port, err := s.startPgcloak(ctx, "pgcloak-enc", extra)
	if err != nil {
		return 0, err
	}
	return port, fillEncrypted(ctx, port)
}

// fillEncrypted copies the plaintext twins into the protected tables
// through pgcloak, waiting until pgcloak has loaded its keys.
func fillEncrypted(ctx context.Context, port int) error {
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB)
	var c *pgx.Conn
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err = pgx.Connect(ctx, dsn); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcloak-enc not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.Close(ctx)
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
// and prints the median rates and their ratio.
func measureCopy(ctx context.Context, port, rows, rounds int) error {
	dsn := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", benchUser, port, benchDB)
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var data bytes.Buffer
	for i := 1; i <= rows; i++ {
		fmt.Fprintf(&data, "%d\tCustomer Name %d\tcustomer%d@example.com\t+81-3-5555-%04d\n", i, i, i, i%10000)
	}
	rates := map[string][]float64{}
	for range rounds {
		for _, table := range []string{"copy_plain", "copy_enc"} {
			if _, err := c.Exec(ctx, "TRUNCATE "+table); err != nil {
				return err
			}
			start := time.Now()
			if _, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(data.Bytes()), "COPY "+table+" FROM STDIN"); err != nil {
				return fmt.Errorf("COPY %s: %w", table, err)
			}
			rates[table] = append(rates[table], float64(rows)/time.Since(start).Seconds())
		}
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	p, e := median(rates["copy_plain"]), median(rates["copy_enc"])
	fmt.Printf("\nCOPY FROM STDIN through pgcloak, %d rows x 3 text columns, median of %d: plaintext %.0f rows/s, protected %.0f rows/s, ratio %.2f\n",
		rows, rounds, p, e, e/p)
	return nil
}
