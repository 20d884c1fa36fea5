package engine

import (
	"slices"
	"testing"
)

// TestServerResultFormats: protected columns are asked for in binary, the
// others keep the client's format, and codes that fit no column count are
// left for PostgreSQL to refuse.
func TestServerResultFormats(t *testing.T) {
	col := &column{}
	rp := &rowPlan{fields: []fieldPlan{{}, {col: col}, {}}, protected: true}
	for _, c := range []struct {
		client, want []int16
	}{
		{nil, []int16{0, 1, 0}},
		{[]int16{0}, []int16{0, 1, 0}},
		{[]int16{1}, nil}, // all binary already
		{[]int16{1, 0, 1}, []int16{1, 1, 1}},
		{[]int16{0, 1, 0}, nil},
		{[]int16{0, 0}, nil}, // PostgreSQL reports the mismatch
	} {
		if got := rp.serverResultFormats(c.client); !slices.Equal(got, c.want) {
			t.Errorf("client %v: server %v, want %v", c.client, got, c.want)
		}
	}
	if got := (&rowPlan{fields: []fieldPlan{{}}}).serverResultFormats(nil); got != nil {
		t.Errorf("unprotected rows: %v", got)
	}
	if got := (*rowPlan)(nil).serverResultFormats(nil); got != nil {
		t.Errorf("unknown rows: %v", got)
	}

	// The portal's plan decodes what the server sends and encodes what the
	// client asked for.
	p := rp.withFormats([]int16{0}, []int16{0, 1, 0})
	if f := p.fields[1]; f.format != 0 || f.srvFormat != 1 {
		t.Errorf("protected field: client %d server %d", f.format, f.srvFormat)
	}
}

// TestUnreadablePlan: a column bound in binary that turns out not to be
// protected makes the plan refuse its rows instead of passing binary values
// to a client that asked for text.
func TestUnreadablePlan(t *testing.T) {
	predicted := &rowPlan{fields: []fieldPlan{{}, {col: &column{}}}, protected: true}
	server := predicted.serverResultFormats(nil)
	actual := &rowPlan{fields: []fieldPlan{{}, {}}} // the server's description: nothing protected
	p := actual.withFormats(nil, server)
	if !p.unreadable || !p.protected {
		t.Fatalf("plan %+v not refused", p)
	}
	if _, err := (&session{cloak: &cloak{}}).decryptRow(p, []byte{'D', 0, 0, 0, 14, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Fatal("rows of an unreadable plan were passed on")
	}
	if p := actual.withFormats(nil, nil); p.unreadable {
		t.Fatal("plan with the client's own formats refused")
	}
}
