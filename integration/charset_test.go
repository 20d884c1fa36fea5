package integration

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgcloak/pgcloak/integration/harness"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// TestCharsetsMatchPostgres checks each client encoding pgcloak converts
// (proxy/values/charset.go) against PostgreSQL's own conversion, character
// by character: every byte sequence of the encoding's character space is
// converted to UTF-8 by PostgreSQL (convert_from) and by pgcloak, which
// must agree on the text or both refuse it; and every character so found
// must convert back (convert_to) to the same bytes in both. Where pgcloak's
// tables lack a character PostgreSQL has (a few IBM extensions in EUC_JP),
// pgcloak refuses it with 0A000, never converts it differently.
func TestCharsetsMatchPostgres(t *testing.T) {
	pg := sharedPG(t)
	ctx := context.Background()
	c := connect(t, pg.DSN(harness.SuperUser, "postgres"))
	if _, err := c.Exec(ctx, `CREATE OR REPLACE FUNCTION pg_temp.try_from(b bytea, e name) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN RETURN convert_from(b, e); EXCEPTION WHEN others THEN RETURN NULL; END $$;
		CREATE OR REPLACE FUNCTION pg_temp.try_to(s text, e name) RETURNS bytea LANGUAGE plpgsql AS $$
		BEGIN RETURN convert_to(s, e); EXCEPTION WHEN others THEN RETURN NULL; END $$`); err != nil {
		t.Fatal(err)
	}
	text, err := values.Lookup("text")
	if err != nil {
		t.Fatal(err)
	}
	encs := values.SupportedEncodings()
	sort.Strings(encs)
	for _, enc := range encs {
		t.Run(enc, func(t *testing.T) {
			s := &values.Session{}
			if err := s.Set("client_encoding", enc); err != nil {
				t.Fatal(err)
			}
			seqs := charSpace(enc)
			var fromPG []*string
			if err := c.QueryRow(ctx, `SELECT array_agg(pg_temp.try_from(b, $2) ORDER BY i) FROM unnest($1::bytea[]) WITH ORDINALITY AS u(b, i)`,
				seqs, enc).Scan(&fromPG); err != nil {
				t.Fatal(err)
			}
			var chars []string
			var bad []string
			notConverted := 0
			refusedByUs := func(err error) bool {
				var ve *values.ValueError
				if errors.As(err, &ve) && ve.Code == "0A000" {
					notConverted++
					return true
				}
				return false
			}
			for i, seq := range seqs {
				ours, err := text.Canonical(nil, 0, seq, s)
				switch {
				case fromPG[i] == nil && err == nil:
					bad = append(bad, fmt.Sprintf("% x: PostgreSQL refuses it, pgcloak reads %q", seq, ours))
				case fromPG[i] != nil && err != nil && refusedByUs(err):
					chars = append(chars, *fromPG[i]) // and back: refused too, or written as PostgreSQL does
				case fromPG[i] != nil && err != nil:
					bad = append(bad, fmt.Sprintf("% x: PostgreSQL reads %q, pgcloak refuses it: %v", seq, *fromPG[i], err))
				case fromPG[i] != nil && string(ours) != *fromPG[i]:
					bad = append(bad, fmt.Sprintf("% x: PostgreSQL reads %q, pgcloak %q", seq, *fromPG[i], ours))
				case fromPG[i] != nil:
					chars = append(chars, *fromPG[i])
				}
			}
			// Back: the characters both read, and some no encoding here has.
			chars = append(chars, "😀", "\u0378")
			var toPG [][]byte
			if err := c.QueryRow(ctx, `SELECT array_agg(pg_temp.try_to(s, $2) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(s, i)`,
				chars, enc).Scan(&toPG); err != nil {
				t.Fatal(err)
			}
			for i, ch := range chars {
				ours, err := text.Encode(nil, []byte(ch), 0, s)
				switch {
				case toPG[i] == nil && err == nil:
					bad = append(bad, fmt.Sprintf("%q: PostgreSQL cannot write it, pgcloak writes % x", ch, ours))
				case toPG[i] != nil && err != nil && refusedByUs(err):
				case toPG[i] != nil && err != nil:
					bad = append(bad, fmt.Sprintf("%q: PostgreSQL writes % x, pgcloak cannot: %v", ch, toPG[i], err))
				case toPG[i] != nil && string(ours) != string(toPG[i]):
					bad = append(bad, fmt.Sprintf("%q: PostgreSQL writes % x, pgcloak % x", ch, toPG[i], ours))
				}
			}
			if len(bad) > 0 {
				t.Errorf("%s: %d of %d sequences and %d characters differ from PostgreSQL, e.g.:\n%s",
					enc, len(bad), len(seqs), len(chars), strings.Join(bad[:min(len(bad), charsetShow)], "\n"))
			}
			t.Logf("%s: %d byte sequences, %d characters agree with PostgreSQL; %d that PostgreSQL converts are refused by pgcloak (0A000)",
				enc, len(seqs), len(chars), notConverted)
		})
	}
}

// charsetShow is how many differences a failure lists.
var charsetShow = 20

// charSpace returns the byte sequences of an encoding's non-ASCII
// characters: every byte ≥ 0x80 for single-byte encodings, every pair (and
// for EUC_JP the 0x8E and 0x8F forms) for the EUC ones.
func charSpace(enc string) [][]byte {
	var out [][]byte
	switch enc {
	case "EUC_JP", "EUC_KR":
		for a := 0xa1; a <= 0xfe; a++ {
			for b := 0xa1; b <= 0xfe; b++ {
				out = append(out, []byte{byte(a), byte(b)})
			}
		}
		out = append(out, []byte{0x80}, []byte{0xa1}, []byte{0xff, 0xa1}, []byte{0xa1, 0x41})
		if enc == "EUC_JP" {
			for b := 0x80; b <= 0xff; b++ {
				out = append(out, []byte{0x8e, byte(b)})
			}
			for a := 0xa1; a <= 0xfe; a++ {
				for b := 0xa1; b <= 0xfe; b++ {
					out = append(out, []byte{0x8f, byte(a), byte(b)})
				}
			}
		}
	default:
		for b := 0x80; b <= 0xff; b++ {
			out = append(out, []byte{byte(b)})
		}
	}
	return out
}

// TestClientEncodingThroughPgcloak writes and reads protected values in
// LATIN1 and EUC_JP sessions through pgcloak, as literals, as text and
// binary parameters and with COPY, reads them back in the session's encoding (text and
// binary results) and in UTF8: what is stored is the UTF-8 text, as
// PostgreSQL would store it.
func TestClientEncodingThroughPgcloak(t *testing.T) {
	e := newEncEnv(t, encEnvOptions{
		schema: `CREATE TABLE people (id int PRIMARY KEY, name bytea, note text);`,
		tables: "public.people:\n  name: {type: text, key: pii}\n",
	})
	ctx := context.Background()
	for i, c := range []struct{ enc, client, utf8 string }{
		{"LATIN1", "M\xfcller \xe9t\xe9", "Müller été"},
		{"EUC_JP", "\xbb\xb3\xc5\xc4\xc2\xc0\xcf\xba", "山田太郎"},
	} {
		pc, err := pgconn.Connect(ctx, e.dsn("client_encoding", c.enc))
		if err != nil {
			t.Fatal(err)
		}
		base := 10 * (i + 1)
		if _, err := pc.Exec(ctx, fmt.Sprintf("INSERT INTO people VALUES (%d, '%s', 'lit')", base, c.client)).ReadAll(); err != nil {
			t.Fatalf("%s literal: %v", c.enc, err)
		}
		for k, format := range []int16{0, 1} {
			r := pc.ExecParams(ctx, `INSERT INTO people VALUES ($1, $2, 'param')`,
				[][]byte{[]byte(fmt.Sprint(base + 1 + k)), []byte(c.client)}, nil, []int16{0, format}, nil).Read()
			if r.Err != nil {
				t.Fatalf("%s parameter in format %d: %v", c.enc, format, r.Err)
			}
		}
		if _, err := pc.CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d\t%s\tcopy\n", base+3, c.client)),
			`COPY people (id, name, note) FROM STDIN`); err != nil {
			t.Fatalf("%s COPY FROM: %v", c.enc, err)
		}
		var copied strings.Builder
		if _, err := pc.CopyTo(ctx, &copied, fmt.Sprintf(`COPY (SELECT name FROM people WHERE id >= %d AND id < %d ORDER BY id) TO STDOUT`, base, base+10)); err != nil {
			t.Fatalf("%s COPY TO: %v", c.enc, err)
		}
		if want := strings.Repeat(c.client+"\n", 4); copied.String() != want {
			t.Errorf("%s COPY TO: %q, want %q", c.enc, copied.String(), want)
		}
		for _, format := range []int16{0, 1} {
			r := pc.ExecParams(ctx, `SELECT name FROM people WHERE id >= $1 AND id < $2 ORDER BY id`,
				[][]byte{[]byte(fmt.Sprint(base)), []byte(fmt.Sprint(base + 10))}, nil, nil, []int16{format}).Read()
			if r.Err != nil || len(r.Rows) != 4 {
				t.Fatalf("%s read in format %d: %d rows, %v", c.enc, format, len(r.Rows), r.Err)
			}
			for _, row := range r.Rows {
				if string(row[0]) != c.client {
					t.Errorf("%s read in format %d: % x, want % x", c.enc, format, row[0], c.client)
				}
			}
		}
		// A character the encoding cannot hold, read in it: PostgreSQL's
		// error, as directly.
		if c.enc == "LATIN1" {
			u := e.connect()
			if _, err := u.Exec(ctx, `INSERT INTO people VALUES (99, '山', 'x')`); err != nil {
				t.Fatal(err)
			}
			res := pc.Exec(ctx, `SELECT name FROM people WHERE id = 99`)
			_, err := res.ReadAll()
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "22P05" {
				t.Errorf("LATIN1 read of 山: %v, want 22P05", err)
			}
		}
		pc.Close(ctx)
	}
	u := e.connect()
	rows, err := u.Query(ctx, `SELECT name FROM people WHERE id < 99 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Müller été", "Müller été", "Müller été", "Müller été", "山田太郎", "山田太郎", "山田太郎", "山田太郎"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("read in UTF8: %q, want %q", got, want)
	}
}
