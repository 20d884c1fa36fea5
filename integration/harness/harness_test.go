package harness

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func connect(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

func currentUser(t *testing.T, dsn string) string {
	t.Helper()
	c, err := connect(t, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	var u string
	if err := c.QueryRow(context.Background(), "SELECT current_user").Scan(&u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestPostgresUsers(t *testing.T) {
	begin := time.Now()
	p := StartPostgres(t, PostgresOptions{})
	t.Logf("StartPostgres took %v", time.Since(begin))

	for _, user := range []string{SuperUser, TrustUser, MD5User, SCRAMUser} {
		if got := currentUser(t, p.DSN(user, AppDB)); got != user {
			t.Errorf("current_user = %q, want %q", got, user)
		}
	}

	// The role's password is stored with the method the role is named
	// after, so the server really runs that exchange.
	c, _ := connect(t, p.DSN(SuperUser, AppDB))
	for user, prefix := range map[string]string{MD5User: "md5", SCRAMUser: "SCRAM-SHA-256$"} {
		var pw string
		if err := c.QueryRow(context.Background(), "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&pw); err != nil {
			t.Fatal(err)
		}
		if len(pw) < len(prefix) || pw[:len(prefix)] != prefix {
			t.Errorf("%s password stored as %.14q…, want prefix %q", user, pw, prefix)
		}
	}

	// Tables made by one role are usable by the others.
	p.MustExec(t, "CREATE TABLE shared (id int)")
	mc, err := connect(t, p.DSN(MD5User, AppDB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.Exec(context.Background(), "INSERT INTO shared VALUES (1); CREATE TABLE mine (id int)"); err != nil {
		t.Fatal(err)
	}
	sc, err := connect(t, p.DSN(SCRAMUser, AppDB))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Exec(context.Background(), "INSERT INTO mine SELECT * FROM shared"); err != nil {
		t.Fatal(err)
	}

	if st, err := os.Stat(p.LogPath); err != nil || st.Size() == 0 {
		t.Errorf("server log %s: %v (empty or missing)", p.LogPath, err)
	}
}

func TestPostgresWrongPassword(t *testing.T) {
	p := StartPostgres(t, PostgresOptions{})
	for _, user := range []string{MD5User, SCRAMUser} {
		cfg, err := pgx.ParseConfig(p.DSN(user, AppDB))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = "wrong"
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err == nil {
			c.Close(context.Background())
			t.Fatalf("%s: connected with a wrong password", user)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Errorf("%s: err = %v, want SQLSTATE 28P01", user, err)
		}
	}
}

func TestPostgresTLS(t *testing.T) {
	ca := NewCA(t, "pgcloak test CA")
	p := StartPostgres(t, PostgresOptions{TLS: ptr(ca.Issue(t, "127.0.0.1", "localhost")), RequireTLS: true})
	c, err := connect(t, p.DSN(SCRAMUser, AppDB)) // sslmode=verify-full
	if err != nil {
		t.Fatal(err)
	}
	var ssl bool
	if err := c.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("ssl = %v, %v; want true", ssl, err)
	}

	// Plain TCP is refused with RequireTLS; a certificate from another CA
	// does not verify.
	cfg, _ := pgx.ParseConfig(p.DSN(SCRAMUser, AppDB))
	cfg.TLSConfig = nil
	if c, err := pgx.ConnectConfig(context.Background(), cfg); err == nil {
		c.Close(context.Background())
		t.Error("plain TCP connection accepted with RequireTLS")
	}
	other := NewCA(t, "other CA")
	p.CAFile = other.CertFile
	if _, err := connect(t, p.DSN(SCRAMUser, AppDB)); err == nil {
		t.Error("verify-full accepted a certificate from another CA")
	}
}

func TestVaultTransit(t *testing.T) {
	v := StartVault(t, VaultOptions{})
	if err := v.Call("POST", "transit/keys/test", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	const plaintext = "aGVsbG8gcGdjbG9haw==" // base64("hello pgcloak")
	var enc struct {
		Data struct{ Ciphertext string } `json:"data"`
	}
	if err := v.Call("POST", "transit/encrypt/test", map[string]any{"plaintext": plaintext}, &enc); err != nil {
		t.Fatal(err)
	}
	var dec struct {
		Data struct{ Plaintext string } `json:"data"`
	}
	if err := v.Call("POST", "transit/decrypt/test", map[string]any{"ciphertext": enc.Data.Ciphertext}, &dec); err != nil {
		t.Fatal(err)
	}
	if dec.Data.Plaintext != plaintext {
		t.Fatalf("round trip: %q -> %q -> %q", plaintext, enc.Data.Ciphertext, dec.Data.Plaintext)
	}

	v.Kill()
	if err := v.Call("GET", "sys/health", nil, nil); err == nil {
		t.Fatal("Vault answers after Kill")
	}
}

func ptr[T any](v T) *T { return &v }
