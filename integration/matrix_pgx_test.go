package integration

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgxMatrixMode is one way pgx talks to the server.
type pgxMatrixMode struct {
	name        string
	mode        pgx.QueryExecMode
	textResults bool // ask for every result column in text format
	textParams  bool // pass every value as a Go string (sent in text format)
}

var pgxMatrixModes = []pgxMatrixMode{
	// Arguments interpolated into the SQL as quoted literals.
	{name: "simple-protocol", mode: pgx.QueryExecModeSimpleProtocol},
	// The default: named prepared statements, binary parameters and
	// results for the types pgx knows.
	{name: "cache-statement/binary", mode: pgx.QueryExecModeCacheStatement},
	{name: "cache-statement/text-results", mode: pgx.QueryExecModeCacheStatement, textResults: true},
	{name: "cache-statement/text-params", mode: pgx.QueryExecModeCacheStatement, textParams: true},
	{name: "cache-describe", mode: pgx.QueryExecModeCacheDescribe},
	// The unnamed statement, described first.
	{name: "describe-exec", mode: pgx.QueryExecModeDescribeExec},
	// The unnamed statement, not described: parameters of unknown type in
	// text format, text results.
	{name: "exec", mode: pgx.QueryExecModeExec},
}

// TestMatrixPgx runs the client matrix with pgx v5 in each query mode and
// in text and binary formats, against a session in Asia/Tokyo.
func TestMatrixPgx(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	rows := matrixRows(true)
	for _, md := range pgxMatrixModes {
		t.Run(md.name, func(t *testing.T) {
			m.reset(t)
			cloak := pgxMatrixClient(connect(t, m.dsn("timezone", "Asia%2FTokyo")), md).run(t, matrixCloak, matrixPlan(matrixCloak, rows))
			oracle := pgxMatrixClient(connect(t, m.directDSN()+"&timezone=Asia%2FTokyo"), md).run(t, matrixPlain, matrixPlan(matrixPlain, rows))
			m.verify(t, cloak, oracle, rows)
		})
	}
}

func pgxMatrixClient(c *pgx.Conn, md pgxMatrixMode) matrixGoClient {
	return matrixGoClient{
		exec: func(ctx context.Context, sql string, args ...any) error {
			_, err := c.Exec(ctx, sql, append([]any{md.mode}, args...)...)
			return err
		},
		query: func(ctx context.Context, sql string) ([][]any, error) {
			opts := []any{md.mode}
			if md.textResults {
				opts = append(opts, pgx.QueryResultFormats{pgx.TextFormatCode})
			}
			rows, err := c.Query(ctx, sql, opts...)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		},
		param: func(kind string, v *string) any {
			if v == nil {
				return nil
			}
			if md.textParams {
				return *v
			}
			described := md.mode != pgx.QueryExecModeExec && md.mode != pgx.QueryExecModeSimpleProtocol
			return pgxMatrixParam(kind, *v, described)
		},
		show: pgxMatrixShow,
	}
}

// pgxMatrixParam is s as the Go value an application hands pgx.
func pgxMatrixParam(kind, s string, described bool) any {
	must := func(err error) {
		if err != nil {
			panic(fmt.Sprintf("test value %q (%s): %v", s, kind, err))
		}
	}
	infinite := strings.HasSuffix(s, "infinity")
	switch kind {
	case "int2", "int4", "int8":
		bits := map[string]int{"int2": 16, "int4": 32, "int8": 64}[kind]
		n, err := strconv.ParseInt(s, 10, bits)
		must(err)
		switch kind {
		case "int2":
			return int16(n)
		case "int4":
			return int32(n)
		}
		return n
	case "numeric":
		var n pgtype.Numeric
		must(n.Scan(s))
		return n
	case "float8":
		f, err := strconv.ParseFloat(s, 64)
		must(err)
		return f
	case "bool":
		return s == "true"
	case "date":
		if infinite {
			var d pgtype.Date
			must(d.Scan(s))
			return d
		}
		d, err := time.Parse(time.DateOnly, s)
		must(err)
		return d
	case "timestamp":
		if infinite {
			var ts pgtype.Timestamp
			must(ts.Scan(s))
			return ts
		}
		ts, err := time.Parse("2006-01-02 15:04:05.999999999", s)
		must(err)
		return ts
	case "timestamptz":
		if infinite {
			var ts pgtype.Timestamptz
			must(ts.Scan(s))
			return ts
		}
		ts, err := time.Parse("2006-01-02 15:04:05.999999999Z07:00", s)
		must(err)
		return ts
	case "uuid":
		var u pgtype.UUID
		must(u.Scan(s))
		return u
	case "jsonb":
		// Modes that do not describe the statement need a string for
		// JSON (pgx sends []byte as bytea there).
		if described {
			return json.RawMessage(s)
		}
		return s
	case "bytea":
		b, err := hex.DecodeString(strings.TrimPrefix(s, `\x`))
		must(err)
		return b
	}
	return s
}

// pgxMatrixShow renders a value of Rows.Values: its Go type (which follows
// the type OID of the RowDescription) and its value.
func pgxMatrixShow(v any) *string {
	if v == nil {
		return nil
	}
	var s string
	switch x := v.(type) {
	case pgtype.Numeric:
		dv, err := x.Value()
		s = fmt.Sprintf("numeric:%v %v", dv, err)
	case time.Time:
		s = "time:" + x.Format("2006-01-02 15:04:05.999999999 -07:00:00 MST")
	case float64:
		s = "float64:" + strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		s = "bytes:" + hex.EncodeToString(x)
	default:
		s = fmt.Sprintf("%T:%#v", v, v)
	}
	return &s
}
