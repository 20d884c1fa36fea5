package copyfmt

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
)

// Benchmarks: a stream of 10,000 rows of 5 columns (id, name, email,
// phone, city), 3 of them protected (name, email, phone), fed in 64 KiB
// CopyData payloads (rows cut across payloads, as psql and pgx send them).
// The FieldFunc is a cheap stand-in for encryption: In appends the value
// and a 28-byte "nonce + tag" (the size AES-GCM adds), Out strips it.
// MB/s counts the input stream.
//
// go test ./proxy/copyfmt -run XXX -bench . -benchtime 300x -count 4, on 2
// shared cores (load ≈ 3), go1.26, linux/amd64; ranges over the 4 runs:
//
//	                        MB/s of input   rows/s          allocs/op
//	text/in   (encrypt)     250-290         3.1-3.5 M       0
//	text/out  (decrypt)     430-510         1.3-1.6 M       0
//	text/passthrough        470-600         5.8-7.4 M       0
//	csv/in    (encrypt)     240-300         2.9-3.7 M       0
//	csv/out   (decrypt)     460-630         1.5-2.0 M       0
//	csv/passthrough         420-590         5.1-7.1 M       0
//	binary/in (encrypt)     1000-1230       10-12 M         0
//	binary/out (decrypt)    1720-2170       9.4-11.9 M      0
//	binary/passthrough      2360-2600       24-26 M         0
//
// An op is the whole 10,000-row stream, so 0 allocs/op is 0 per row
// (TestNoAllocs checks it). "out" reads the server's stream, which is
// larger (hex): compare rows/s. In text and CSV, COPY FROM writes about
// four times what it reads (hex doubles each protected value and its 28
// bytes of overhead); the hex encoder is about a third of the time.

const benchRows = 10000

var benchProt = []bool{false, true, true, true, false}

func benchFieldIn(dst []byte, col int, v []byte) ([]byte, error) {
	dst = append(dst, v...)
	return append(dst, make([]byte, 28)...), nil
}

func benchFieldOut(dst []byte, col int, v []byte) ([]byte, error) {
	if len(v) < 28 {
		return dst, fmt.Errorf("short")
	}
	return append(dst, v[:len(v)-28]...), nil
}

// benchStream returns the client's COPY FROM data for format f.
func benchStream(f Format) []byte {
	var b []byte
	if f == Binary {
		b = binHeader(nil)
	}
	for i := 0; i < benchRows; i++ {
		id := strconv.Itoa(100000 + i)
		name := "Jane Smith-" + id
		if i%7 == 0 {
			name = "Smith, Jane \"JJ\" " + id
		}
		email := "jane.smith." + id + "@example.com"
		phone := "+1-555-" + id
		city := "Springfield"
		switch f {
		case Text:
			b = fmt.Appendf(b, "%s\t%s\t%s\t%s\t%s\n", id, name, email, phone, city)
		case CSV:
			if i%7 == 0 {
				name = `"Smith, Jane ""JJ"" ` + id + `"`
			}
			b = fmt.Appendf(b, "%s,%s,%s,%s,%s\n", id, name, email, phone, city)
		case Binary:
			b = binary.BigEndian.AppendUint16(b, 5)
			for _, v := range []string{id, name, email, phone, city} {
				b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
				b = append(b, v...)
			}
		}
	}
	if f == Binary {
		b = append(b, binTrailer...)
	}
	return b
}

func chunks64k(b []byte) [][]byte {
	var cs [][]byte
	for len(b) > 0 {
		n := min(len(b), 64<<10)
		cs = append(cs, b[:n])
		b = b[n:]
	}
	return cs
}

func benchRun(b *testing.B, cfg Config, stream []byte) {
	cs := chunks64k(stream)
	r, err := NewRewriter(cfg)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 256<<10)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Reset(cfg); err != nil {
			b.Fatal(err)
		}
		for _, c := range cs {
			// The session sends out as CopyData and reuses it.
			if out, err = r.Write(out[:0], c); err != nil {
				b.Fatal(err)
			}
		}
		if out, err = r.Close(out[:0]); err != nil {
			b.Fatal(err)
		}
		if r.Rows() != benchRows {
			b.Fatalf("%d rows", r.Rows())
		}
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkRewriter(b *testing.B) {
	for _, f := range []Format{Text, CSV, Binary} {
		o := DefaultOptions(f)
		in := benchStream(f)
		cfgIn := Config{Options: o, Direction: In, Table: "customers",
			Columns: []string{"id", "name", "email", "phone", "city"}, Protected: benchProt, Transform: benchFieldIn}
		// What the server sends back: the In output.
		r, err := NewRewriter(cfgIn)
		if err != nil {
			b.Fatal(err)
		}
		out, err := r.Write(nil, in)
		if err == nil {
			out, err = r.Close(out)
		}
		if err != nil {
			b.Fatal(err)
		}
		cfgOut := cfgIn
		cfgOut.Direction, cfgOut.Transform = Out, benchFieldOut
		b.Run(f.String()+"/in", func(b *testing.B) { benchRun(b, cfgIn, in) })
		b.Run(f.String()+"/out", func(b *testing.B) { benchRun(b, cfgOut, out) })
		cfgPass := cfgIn
		cfgPass.Protected = nil
		b.Run(f.String()+"/passthrough", func(b *testing.B) { benchRun(b, cfgPass, in) })
	}
}
