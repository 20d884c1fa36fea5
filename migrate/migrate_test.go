package migrate

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/values"
)

func mustType(t *testing.T, s string) *values.Type {
	t.Helper()
	typ, err := values.Lookup(s)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}

// testRelation is public.customers as Inspect would return it.
func testRelation() *Relation {
	return &Relation{
		Schema: "public", Name: "customers", OID: 1,
		Attrs: []Attr{
			{Name: "id", Num: 1, TypeOID: 23, Type: "integer", TypeName: "int4"},
			{Name: "email", Num: 2, TypeOID: 25, Type: "text", TypeName: "text", HasDefault: true},
			{Name: "active", Num: 3, TypeOID: 16, Type: "boolean", TypeName: "bool"},
			{Name: "code", Num: 4, TypeOID: 1042, Type: "character(4)", TypeName: "bpchar"},
			{Name: "photo", Num: 5, TypeOID: 17, Type: "bytea", TypeName: "bytea"},
			{Name: "Birth Day", Num: 6, TypeOID: 1082, Type: "date", TypeName: "date"},
		},
		PK: []Attr{{Name: "id", Num: 1, Type: "integer"}},
		Constraints: []Constraint{
			{Name: "customers_pkey", Kind: 'p', Validated: true, Attnums: []int16{1}},
			{Name: "email_has_at", Kind: 'c', Validated: true, Def: "CHECK ((email ~~ '%@%'::text))", Attnums: []int16{2}},
			{Name: "customers_email_key", Kind: 'u', Validated: true, Def: "UNIQUE (email)", Attnums: []int16{2}},
		},
		Indexes: []Index{
			{Name: "customers_pkey", Primary: true, Unique: true, Keys: []int16{1}, Uses: []int16{1}},
			{Name: "customers_email_key", Unique: true, Keys: []int16{2}, Uses: []int16{2}},
			{Name: "customers_lower_email", Keys: []int16{0}, Expression: true, Uses: []int16{2}},
			{Name: "customers_code", Keys: []int16{4}, Uses: []int16{4}},
		},
		Views: []Dependent{{Name: "active_customers", Attnum: 3}},
	}
}

func TestPlan(t *testing.T) {
	rel := testRelation()
	cols := []PlanColumn{
		{Name: "active", Type: mustType(t, "bool"), Mode: crypto.Randomized, Keyring: "pii"},
		{Name: "Birth Day", Type: mustType(t, "date"), Mode: crypto.Randomized, Keyring: "pii"},
		{Name: "code", Type: mustType(t, "char(4)"), Mode: crypto.Randomized, Keyring: "pii"},
		{Name: "email", Type: mustType(t, "varchar(64)"), Mode: crypto.Deterministic, Keyring: "pii", Group: "mail"},
		{Name: "photo", Type: mustType(t, "bytea"), Mode: crypto.Randomized, Keyring: "pii"},
	}
	got, err := Plan(rel, "public.customers", cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--          email: {type: character varying(64), key: pii, mode: deterministic, search_group: mail, state: migrating}",
		"--          code: {type: character(4), key: pii, state: migrating}",
		"BEGIN;\nSET LOCAL DateStyle = 'ISO, MDY';\nSET LOCAL TimeZone = 'UTC';",
		`ALTER TABLE "public"."customers" ALTER COLUMN "email" DROP DEFAULT;`,
		`ALTER TABLE "public"."customers" DROP CONSTRAINT "email_has_at";`,
		`DROP INDEX "public"."customers_lower_email";`,
		`  ALTER COLUMN "active" TYPE bytea USING convert_to(CASE "active" WHEN true THEN 't' WHEN false THEN 'f' END, 'UTF8'),`,
		`  ALTER COLUMN "Birth Day" TYPE bytea USING convert_to("Birth Day"::text, 'UTF8'),`,
		`  ALTER COLUMN "code" TYPE bytea USING convert_to(rpad("code"::text, 4), 'UTF8'),`,
		`  ALTER COLUMN "email" TYPE bytea USING convert_to("email"::text, 'UTF8');`,
		"COMMIT;\n",
		"photo is bytea already: nothing to change.",
		"email is text in the database but character varying(64) in the config",
		"view or rule active_customers uses active",
		"index customers_code on code is useless once the values are randomized ciphertext",
		"email is deterministic: until migrate encrypt has finished",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("plan lacks %q", want)
		}
	}
	// A deterministic column keeps its unique constraint without a note.
	if strings.Contains(got, "customers_email_key (UNIQUE (email)) cannot hold") {
		t.Error("unique constraint of a deterministic column reported")
	}
	// Every line before BEGIN is a comment: the script runs as it is.
	head, _, _ := strings.Cut(got, "\nBEGIN;")
	for _, l := range strings.Split(head, "\n") {
		if l != "" && !strings.HasPrefix(l, "--") {
			t.Errorf("line outside a comment: %q", l)
		}
		if len(l) > 110 && !strings.HasPrefix(l, "--          ") { // YAML rules may be long
			t.Errorf("line of %d characters: %q", len(l), l)
		}
	}
	if t.Failed() {
		t.Log(got)
	}

	// Randomized email: the unique constraint cannot hold.
	cols[3].Mode = crypto.Randomized
	got, _ = Plan(rel, "public.customers", cols)
	if !strings.Contains(got, "constraint customers_email_key (UNIQUE (email)) cannot hold on randomized ciphertext") {
		t.Errorf("no note on the unique constraint:\n%s", got)
	}

	// Nothing to do.
	got, _ = Plan(rel, "public.customers", cols[4:])
	if strings.Contains(got, "BEGIN") || !strings.Contains(got, "no DDL is needed") {
		t.Errorf("bytea only:\n%s", got)
	}
	if _, err := Plan(rel, "public.customers", []PlanColumn{{Name: "nosuch", Type: mustType(t, "text")}}); err == nil {
		t.Error("unknown column accepted")
	}
}

func TestRestoreSQL(t *testing.T) {
	rel := testRelation()
	got := RestoreSQL(rel, []Column{{Name: "email", Type: mustType(t, "varchar(64)")}, {Name: "photo", Type: mustType(t, "bytea")},
		{Name: "Birth Day", Type: mustType(t, "date")}})
	want := `ALTER TABLE "public"."customers"
  ALTER COLUMN "email" TYPE character varying(64) USING convert_from("email", 'UTF8')::character varying(64),
  ALTER COLUMN "Birth Day" TYPE date USING convert_from("Birth Day", 'UTF8')::date;
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if RestoreSQL(rel, []Column{{Name: "photo", Type: mustType(t, "bytea")}}) != "" {
		t.Fatal("bytea needs no restore")
	}
}

func TestSQL(t *testing.T) {
	rel := testRelation()
	r, err := newRunner(nil, Options{Op: OpEncrypt, Rel: rel, Columns: []Column{{Name: "photo"}}, Batch: 10})
	if err != nil {
		t.Fatal(err)
	}
	// ORDER BY must name the table's column (t."id"), not the text output
	// column called id, or "10" sorts before "9".
	if want := `SELECT t."id"::text AS k0, t."photo" FROM "public"."customers" AS t WHERE t."id" > $1::text::integer ORDER BY t."id" LIMIT 10 FOR UPDATE`; r.next != want {
		t.Errorf("next:\n%s\nwant\n%s", r.next, want)
	}
	if !strings.Contains(r.update, `"photo" = CASE WHEN v.n0 IS NULL THEN t."photo" WHEN t."photo" IS NOT DISTINCT FROM v.o0 THEN v.n0 ELSE t."photo" END`) ||
		!strings.Contains(r.update, `FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS v(k0, o0, n0) WHERE t."id" = v.k0::integer`) {
		t.Errorf("update:\n%s", r.update)
	}

	composite := testRelation()
	composite.PK = []Attr{{Name: "tenant", Type: "text"}, {Name: "id", Type: "integer"}}
	composite.Attrs = append(composite.Attrs, Attr{Name: "tenant", Num: 7, Type: "text", TypeName: "text"})
	r, err = newRunner(nil, Options{Op: OpEncrypt, Rel: composite, Columns: []Column{{Name: "photo"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.next, `WHERE (t."tenant", t."id") > ($1::text::text, $2::text::integer) ORDER BY t."tenant", t."id" LIMIT 1000`) {
		t.Errorf("composite next:\n%s", r.next)
	}
	if !strings.Contains(r.update, `WHERE t."tenant" = v.k0::text AND t."id" = v.k1::integer`) {
		t.Errorf("composite update:\n%s", r.update)
	}

	for _, bad := range []struct {
		o    Options
		want string
	}{
		{Options{Rel: &Relation{Schema: "public", Name: "x"}, Columns: []Column{{Name: "a"}}}, "no primary key"},
		{Options{Rel: rel, Columns: []Column{{Name: "email"}}}, "not bytea: run pgcloak migrate plan"},
		{Options{Rel: rel, Columns: []Column{{Name: "nosuch"}}}, "has no column"},
		{Options{Rel: rel}, "no column to migrate"},
	} {
		if _, err := newRunner(nil, bad.o); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.o.Columns, err, bad.want)
		}
	}
}

func testKeyring(t *testing.T, versions ...uint32) *crypto.Keyring {
	t.Helper()
	kr := crypto.NewKeyring("pii")
	for _, v := range versions {
		dek := bytes.Repeat([]byte{byte(v)}, 32)
		if err := kr.Add(v, dek); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

func TestTransform(t *testing.T) {
	id, err := crypto.NewColumnID("public", "customers", "age")
	if err != nil {
		t.Fatal(err)
	}
	kr := testKeyring(t, 1)
	col := Column{Name: "age", Type: mustType(t, "int4"), Mode: crypto.Randomized, ID: id, Keyring: kr}
	enc := &runner{o: Options{Op: OpEncrypt}}

	// Plaintext is canonicalized, then encrypted.
	v, err := enc.transform(&col, []byte(" 007"))
	if err != nil || !crypto.IsCiphertext(v) {
		t.Fatalf("encrypt: %q %v", v, err)
	}
	if p, err := kr.Decrypt(nil, v, id); err != nil || string(p) != "7" {
		t.Fatalf("decrypts to %q %v", p, err)
	}
	// Ciphertext is left alone: no double encryption.
	if again, err := enc.transform(&col, v); err != nil || again != nil {
		t.Fatalf("second encrypt: %q %v", again, err)
	}
	// Something that looks like ciphertext but does not decrypt stops the run.
	forged := append([]byte(nil), v...)
	forged[len(forged)-1] ^= 1
	if _, err := enc.transform(&col, forged); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Fatalf("forged: %v", err)
	}
	// A value that is not valid for the logical type stops the run too.
	var ve *values.ValueError
	if _, err := enc.transform(&col, []byte("seven")); !errors.As(err, &ve) || ve.Code != "22P02" {
		t.Fatalf("invalid int4: %v", err)
	}

	// Rotate: after a new version, old values are re-encrypted, current
	// ones left; a change of mode re-encrypts too; plaintext is refused.
	if err := kr.Add(2, bytes.Repeat([]byte{2}, 32)); err != nil {
		t.Fatal(err)
	}
	rot := &runner{o: Options{Op: OpRotate}}
	v2, err := rot.transform(&col, v)
	if err != nil || v2 == nil {
		t.Fatalf("rotate: %v", err)
	}
	if h, _ := crypto.ParseHeader(v2); h.KeyVersion != 2 {
		t.Fatalf("rotated to version %d", h.KeyVersion)
	}
	if same, err := rot.transform(&col, v2); err != nil || same != nil {
		t.Fatalf("rotate of a current value: %q %v", same, err)
	}
	det := col
	det.Mode = crypto.Deterministic
	if v3, err := rot.transform(&det, v2); err != nil || v3 == nil {
		t.Fatalf("rotate to deterministic: %v", err)
	} else if h, _ := crypto.ParseHeader(v3); h.Mode != crypto.Deterministic {
		t.Fatalf("mode %v", h.Mode)
	}
	if _, err := rot.transform(&col, []byte("7")); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("rotate of plaintext: %v", err)
	}

	// Decrypt: the canonical plaintext; plaintext stays; empty is not NULL.
	dec := &runner{o: Options{Op: OpDecrypt}}
	if p, err := dec.transform(&col, v2); err != nil || string(p) != "7" {
		t.Fatalf("decrypt: %q %v", p, err)
	}
	if p, err := dec.transform(&col, []byte("7")); err != nil || p != nil {
		t.Fatalf("decrypt of plaintext: %q %v", p, err)
	}
	text := Column{Name: "age", Type: mustType(t, "text"), Mode: crypto.Randomized, ID: id, Keyring: kr}
	empty, err := enc.transform(&text, []byte{})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := dec.transform(&text, empty); err != nil || p == nil || len(p) != 0 {
		t.Fatalf("empty value: %v %v", p, err)
	}

	// bytea: the stored bytes are the value, not hex text.
	raw := Column{Name: "age", Type: mustType(t, "bytea"), Mode: crypto.Randomized, ID: id, Keyring: kr}
	rv, err := enc.transform(&raw, []byte{0, 1, '\\', 'x'})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := kr.Decrypt(nil, rv, id); !bytes.Equal(p, []byte{0, 1, '\\', 'x'}) {
		t.Fatalf("bytea plaintext %q", p)
	}
}

func TestBarLine(t *testing.T) {
	p := Progress{Op: OpEncrypt, Table: "public.customers", Done: 100_000, Total: 200_000, RunRows: 50_000, Elapsed: 2 * time.Second}
	want := "encrypt public.customers [==========>         ] 100000/200000 rows  50%  25000 rows/s  ETA 4s"
	if got := BarLine(p, 20); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	p = Progress{Op: OpRotate, Table: "t", Total: 10}
	if got := BarLine(p, 4); got != "rotate t [>   ] 0/10 rows   0%  0 rows/s  ETA -" {
		t.Fatalf("start: %q", got)
	}
	p = Progress{Op: OpRotate, Table: "t", Done: 12, Total: 10, RunRows: 12, Elapsed: time.Second}
	if got := BarLine(p, 4); got != "rotate t [====] 12/10 rows 100%  12 rows/s  ETA 0s" {
		t.Fatalf("past the estimate: %q", got)
	}
}

func TestComment(t *testing.T) {
	got := comment("2. "+strings.Repeat("word ", 30), "-- ")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "-- 2. word") || !strings.HasPrefix(lines[1], "--    word") {
		t.Fatalf("%q", got)
	}
	for _, l := range lines {
		if len(l) > 100 {
			t.Fatalf("line of %d: %q", len(l), l)
		}
	}
}

func TestDisplay(t *testing.T) {
	for in, want := range map[string]string{"email": "email", "Email": `"Email"`, "birth day": `"birth day"`, "a$1": "a$1", "1a": `"1a"`, `q"`: `"q"""`} {
		if got := Display(in); got != want {
			t.Errorf("Display(%q) = %s, want %s", in, got, want)
		}
	}
}
