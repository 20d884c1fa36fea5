package integration

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMatrixLibpq runs the client matrix with lib/pq through database/sql:
// parameterised INSERT, UPDATE and SELECT (text-format parameters, []byte
// as bytea hex), and again with binary_parameters=yes ([]byte sent in
// binary, each statement in one round trip).
func TestMatrixLibpq(t *testing.T) {
	t.Parallel()
	m := newMatrixEnv(t)
	rows := matrixRows(false)
	for _, params := range [][]string{nil, {"binary_parameters", "yes"}} {
		name := "default"
		if params != nil {
			name = strings.Join(params, "=")
		}
		t.Run(name, func(t *testing.T) {
			m.reset(t)
			direct := m.directDSN()
			for i := 0; i+1 < len(params); i += 2 {
				direct += "&" + params[i] + "=" + params[i+1]
			}
			cloak := libpqMatrixClient(t, m.dsn(params...)).run(t, matrixCloak, matrixPlan(matrixCloak, rows))
			oracle := libpqMatrixClient(t, direct).run(t, matrixPlain, matrixPlan(matrixPlain, rows))
			m.verify(t, cloak, oracle, rows)
		})
	}
}

func libpqMatrixClient(t *testing.T, dsn string) matrixGoClient {
	db := openPQ(t, dsn)
	db.SetMaxOpenConns(1)
	return matrixGoClient{
		exec: func(ctx context.Context, sql string, args ...any) error {
			_, err := db.ExecContext(ctx, sql, args...)
			return err
		},
		query: func(ctx context.Context, query string) ([][]any, error) {
			// A parameter makes lib/pq use the extended protocol.
			query = strings.Replace(query, " ORDER BY", " WHERE id > $1 ORDER BY", 1)
			rows, err := db.QueryContext(ctx, query, 0)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			cols, err := rows.Columns()
			if err != nil {
				return nil, err
			}
			var out [][]any
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					return nil, err
				}
				out = append(out, vals)
			}
			return out, rows.Err()
		},
		param: libpqMatrixParam,
		show:  libpqMatrixShow,
	}
}

// libpqMatrixParam is a test value as the Go value an application hands
// database/sql.
func libpqMatrixParam(kind string, v *string) any {
	if v == nil {
		return nil
	}
	s := *v
	var (
		val any
		err error
	)
	switch kind {
	case "int2", "int4", "int8":
		val, err = strconv.ParseInt(s, 10, 64)
	case "float8":
		val, err = strconv.ParseFloat(s, 64)
	case "bool":
		val, err = strconv.ParseBool(s)
	case "date":
		val, err = time.Parse(time.DateOnly, s)
	case "timestamp":
		val, err = time.Parse("2006-01-02 15:04:05.999999999", s)
	case "timestamptz":
		val, err = time.Parse("2006-01-02 15:04:05.999999999Z07:00", s)
	case "bytea":
		val, err = hex.DecodeString(strings.TrimPrefix(s, `\x`))
	default: // text, varchar, bpchar, numeric, uuid, jsonb
		val = s
	}
	if err != nil {
		panic(fmt.Sprintf("test value %q (%s): %v", s, kind, err))
	}
	return val
}

// libpqMatrixShow renders what lib/pq returned: its Go type follows the
// type OID of the RowDescription.
func libpqMatrixShow(v any) *string {
	if v == nil {
		return nil
	}
	var s string
	switch x := v.(type) {
	case time.Time:
		s = "time:" + x.Format("2006-01-02 15:04:05.999999999 -07:00:00 MST")
	case float64:
		s = "float64:" + strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		s = fmt.Sprintf("bytes:%q", x)
	default:
		s = fmt.Sprintf("%T:%#v", v, v)
	}
	return &s
}
