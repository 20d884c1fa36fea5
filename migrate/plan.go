package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/proxy/catalog"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// PlanColumn is a protected column as migrate plan sees it: its rule in the
// config.
type PlanColumn struct {
	Name    string
	Type    *values.Type // the logical type (tables.*.*.type)
	Mode    crypto.Mode
	Keyring string
	Group   string // search_group
}

// sessionSQL makes the text output of every supported type its canonical
// form (proxy/values): ISO dates, UTC for timestamptz, shortest floats.
const sessionSQL = `SET LOCAL DateStyle = 'ISO, MDY';
SET LOCAL TimeZone = 'UTC';
SET LOCAL extra_float_digits = 1;
SET LOCAL IntervalStyle = 'postgres';
`

// Plan returns a SQL script (psql -f or any client) that turns the
// columns of rel from their plaintext type into bytea in place, each value
// becoming the UTF-8 bytes of its canonical text form, which pgcloak's
// migrating state reads as plaintext. table is the tables: key of the
// config; config the keys it needs for the migrating state. Columns that are
// bytea already are left alone. Everything a DBA must decide (indexes,
// constraints and views that the change breaks or makes useless) is in
// comments, with the statement to run.
func Plan(rel *Relation, table string, cols []PlanColumn) (string, error) {
	var b strings.Builder
	var todo []PlanColumn
	var notes, drops []string
	for _, c := range cols {
		a := rel.Attr(c.Name)
		if a == nil {
			return "", fmt.Errorf("%s has no column %q; fix the name in the config", rel.String(), c.Name)
		}
		if a.IsBytea() {
			notes = append(notes, fmt.Sprintf("%s is bytea already: nothing to change.", c.Name))
			continue
		}
		todo = append(todo, c)
		if a.TypeName != c.Type.Name() {
			notes = append(notes, fmt.Sprintf("%s is %s in the database but %s in the config: values are converted with %s's text output "+
				"and checked against %s by migrate encrypt.", c.Name, a.Type, c.Type, a.Type, c.Type))
		}
		if a.HasDefault {
			drops = append(drops, fmt.Sprintf("-- %s has a DEFAULT: a server-side value would be stored in plaintext.\n"+
				"ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT;\n", c.Name, rel.Ident(), quote(c.Name)))
		}
		for _, con := range rel.Constraints {
			if !slices.Contains(con.Attnums, a.Num) || con.Name == catalog.BackstopName(c.Name) {
				continue
			}
			switch con.Kind {
			case 'c':
				drops = append(drops, fmt.Sprintf("-- CHECK %s reads the plaintext of %s; on ciphertext it cannot work.\n"+
					"ALTER TABLE %s DROP CONSTRAINT %s;\n", con.Name, c.Name, rel.Ident(), quote(con.Name)))
			case 'f':
				notes = append(notes, fmt.Sprintf("foreign key %s (%s) joins %s on plaintext: the type change fails while it exists. "+
					"Drop it, or protect both sides with mode: deterministic and one search_group and convert them together.", con.Name, con.Def, c.Name))
			case 'u', 'x':
				if c.Mode != crypto.Deterministic {
					notes = append(notes, fmt.Sprintf("constraint %s (%s) cannot hold on randomized ciphertext (equal values encrypt differently): "+
						"use mode: deterministic for %s, or drop it: ALTER TABLE %s DROP CONSTRAINT %s;", con.Name, con.Def, c.Name, rel.Ident(), quote(con.Name)))
				}
			}
		}
		for _, ix := range rel.Indexes {
			if !slices.Contains(ix.Uses, a.Num) || ix.Primary || rel.constraintIndex(ix.Name) {
				continue
			}
			switch {
			case ix.Expression:
				drops = append(drops, fmt.Sprintf("-- index %s computes over the plaintext of %s; it cannot be rebuilt on bytea.\n"+
					"DROP INDEX %s;\n", ix.Name, c.Name, pgxIdent(rel.Schema, ix.Name)))
			case c.Mode != crypto.Deterministic && ix.Unique:
				notes = append(notes, fmt.Sprintf("unique index %s cannot hold on randomized ciphertext: use mode: deterministic for %s, or DROP INDEX %s;",
					ix.Name, c.Name, pgxIdent(rel.Schema, ix.Name)))
			case c.Mode != crypto.Deterministic:
				notes = append(notes, fmt.Sprintf("index %s on %s is useless once the values are randomized ciphertext: DROP INDEX CONCURRENTLY %s;",
					ix.Name, c.Name, pgxIdent(rel.Schema, ix.Name)))
			}
		}
		for _, v := range rel.Views {
			if v.Attnum == a.Num {
				notes = append(notes, fmt.Sprintf("view or rule %s uses %s: the type change fails while it exists; save its definition "+
					"(SELECT pg_get_viewdef('%s')), drop it, and recreate it afterwards.", v.Name, c.Name, v.Name))
			}
		}
		if c.Mode == crypto.Deterministic {
			notes = append(notes, fmt.Sprintf("%s is deterministic: until migrate encrypt has finished, equality searches through pgcloak "+
				"(WHERE %s = $1) find only the rows already encrypted.", c.Name, c.Name))
		}
	}

	fmt.Fprintf(&b, "-- pgcloak migrate plan for %s: %s\n", rel.String(), planNames(cols))
	b.WriteString("--\n")
	for _, n := range notes {
		b.WriteString(comment("NOTE: "+n, "--   "))
	}
	if len(notes) > 0 {
		b.WriteString("--\n")
	}
	if len(todo) == 0 {
		b.WriteString("-- Every column is bytea already; no DDL is needed. Continue with step 3 below.\n--\n")
	} else {
		b.WriteString(comment("1. Put the rules in the config with state: migrating (reads then accept the plaintext left by step 2; writes always encrypt):", "-- "))
		fmt.Fprintf(&b, "--      tables:\n--        %s:\n", table)
		for _, c := range cols {
			fmt.Fprintf(&b, "--          %s: {%s, state: migrating}\n", c.Name, ruleYAML(c))
		}
		b.WriteString("--\n")
		b.WriteString(comment("2. Run this script. It rewrites the table under an ACCESS EXCLUSIVE lock: reads and writes of "+rel.String()+
			" wait until it commits, and pgcloak instances that do not protect these columns yet must not write them from now on "+
			"(a text parameter no longer fits a bytea column). Stop the writers for the moment it takes, then go on at once with step 3.", "-- "))
		b.WriteString("--\n")
	}
	b.WriteString(comment("3. Restart pgcloak (or start new instances and move the clients) with the migrating config.", "-- "))
	b.WriteString(comment(fmt.Sprintf("4. pgcloak migrate encrypt --table %s   (online, batched, resumable; it ends by adding the CHECK constraints that refuse plaintext).", table), "-- "))
	b.WriteString(comment("5. Set state: encrypted (or remove state:) and restart pgcloak. pgcloak check verifies the result.", "-- "))
	b.WriteString(comment("6. The plaintext stays in dead row versions, WAL and old backups until they are cleaned up: see docs/lifecycle.md.", "-- "))
	if len(todo) == 0 {
		return b.String(), nil
	}
	b.WriteString("\nBEGIN;\n")
	b.WriteString(sessionSQL)
	for _, d := range drops {
		b.WriteString(d)
	}
	fmt.Fprintf(&b, "ALTER TABLE %s\n", rel.Ident())
	for i, c := range todo {
		sep := ","
		if i == len(todo)-1 {
			sep = ";"
		}
		fmt.Fprintf(&b, "  ALTER COLUMN %s TYPE bytea USING %s%s\n", quote(c.Name), toBytesExpr(rel.Attr(c.Name), c.Type), sep)
	}
	b.WriteString("COMMIT;\n")
	return b.String(), nil
}

// toBytesExpr is the USING expression that turns the column into the UTF-8
// bytes of the canonical form of its logical type. The session settings of
// the script make ::text canonical for every type except boolean (whose cast
// says true/false, where the canonical form is t/f) and char(n) (whose cast
// drops the padding that the canonical form keeps).
func toBytesExpr(a *Attr, t *values.Type) string {
	c := quote(a.Name)
	switch {
	case a.TypeName == "bool":
		return fmt.Sprintf("convert_to(CASE %s WHEN true THEN 't' WHEN false THEN 'f' END, 'UTF8')", c)
	case t.Name() == "bpchar" && t.Typmod() > 4:
		return fmt.Sprintf("convert_to(rpad(%s::text, %d), 'UTF8')", c, t.Typmod()-4)
	}
	return fmt.Sprintf("convert_to(%s::text, 'UTF8')", c)
}

// constraintIndex reports whether the index backs a constraint (reported
// with the constraint).
func (r *Relation) constraintIndex(name string) bool {
	c := r.Constraint(name)
	return c != nil && (c.Kind == 'u' || c.Kind == 'p' || c.Kind == 'x')
}

// RestoreSQL is the DDL that gives the columns back their logical type,
// after migrate decrypt has written the plaintext back as UTF-8 bytes of the
// canonical form. bytea columns (logical type bytea) need none.
func RestoreSQL(rel *Relation, cols []Column) string {
	var parts []string
	for _, c := range cols {
		if c.Type.Name() == "bytea" {
			continue
		}
		parts = append(parts, fmt.Sprintf("  ALTER COLUMN %s TYPE %s USING convert_from(%s, 'UTF8')::%s", quote(c.Name), c.Type, quote(c.Name), c.Type))
	}
	if len(parts) == 0 {
		return ""
	}
	return "ALTER TABLE " + rel.Ident() + "\n" + strings.Join(parts, ",\n") + ";\n"
}

func ruleYAML(c PlanColumn) string {
	typ := c.Type.String()
	if strings.ContainsAny(typ, ",{}[]:#") {
		typ = `"` + typ + `"` // a comma ends a value in a YAML flow mapping
	}
	s := "type: " + typ + ", key: " + c.Keyring
	if c.Mode == crypto.Deterministic {
		s += ", mode: deterministic"
	}
	if c.Group != "" {
		s += ", search_group: " + c.Group
	}
	return s
}

func planNames(cols []PlanColumn) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

func pgxIdent(schema, name string) string { return quote(schema) + "." + quote(name) }

// comment wraps text at about 100 columns into SQL comment lines that
// start with prefix ("-- "); a numbered step's continuation lines are
// indented under its text.
func comment(text, prefix string) string {
	const width = 100
	cont := prefix
	if len(text) > 2 && text[0] >= '1' && text[0] <= '9' && text[1] == '.' {
		cont += "   "
	}
	var b strings.Builder
	line, empty := prefix, true
	for _, w := range strings.Fields(text) {
		if !empty && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line, empty = cont, true
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}
