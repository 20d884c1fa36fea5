package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/pgcloak/pgcloak/config"
	"github.com/pgcloak/pgcloak/proxy/access"
	"github.com/pgcloak/pgcloak/proxy/values"
)

// AccessRow is one line of pgcloak check --access: what a role may do with
// a protected column.
type AccessRow struct {
	Role   string `json:"role"`
	Column string `json:"column"`
	Read   string `json:"read"`
	Mask   string `json:"mask,omitempty"`
	// Type is the type the client sees ("" when denied).
	Type   string `json:"type,omitempty"`
	Write  bool   `json:"write"`
	Search bool   `json:"search"`
	Rule   string `json:"rule"`
}

// otherRoles stands for the roles no rule names.
const otherRoles = "(any other role)"

// accessRows decides, as serve does, what each role (facts.Role, or every
// role the rules name and any other) may do with each protected column.
func accessRows(cfg *config.Config, facts access.Session) ([]AccessRow, error) {
	p, err := access.New(cfg)
	if err != nil {
		return nil, err
	}
	roles := []string{facts.Role}
	if facts.Role == "" {
		roles = append(p.Roles(), otherRoles)
	}
	if facts.CertCN != "" {
		facts.CertSubject = "CN=" + facts.CertCN
	}
	var rows []AccessRow
	for _, role := range roles {
		s := facts
		s.Role = role
		if role == otherRoles {
			s.Role = "" // no rule names the empty role
		}
		for _, ref := range cfg.ProtectedColumns() {
			t, err := values.Lookup(ref.Rule.Type)
			if err != nil {
				return nil, fmt.Errorf("tables.%s.%s: %w", ref.Table, ref.Column, err)
			}
			d, err := p.Decide(s, access.Column{Schema: ref.Schema, Table: ref.Name, Name: ref.Column, Type: t})
			if err != nil {
				return nil, err
			}
			row := AccessRow{Role: role, Column: ref.Table + "." + ref.Column, Read: d.Read.String(), Write: d.Write, Search: d.Search, Rule: d.Rule}
			switch d.Read {
			case access.Plaintext:
				row.Type = t.String()
			case access.Masked:
				row.Mask, row.Type = d.Mask.Spec().String(), d.Mask.Type().String()
			case access.Ciphertext:
				row.Type = "bytea"
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// printAccess prints the access rows as a table or JSON.
func printAccess(w io.Writer, cfg *config.Config, facts access.Session, asJSON bool) error {
	rows, err := accessRows(cfg, facts)
	if err != nil {
		return err
	}
	if asJSON {
		if rows == nil {
			rows = []AccessRow{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Access []AccessRow `json:"access"`
		}{rows})
	}
	if cfg.Access == nil {
		fmt.Fprintln(w, "the config has no access section: every role reads, writes and searches every protected column in plaintext")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tCOLUMN\tREAD\tSEES\tWRITE\tSEARCH\tRULE")
	yn := map[bool]string{true: "yes", false: "no"}
	for _, r := range rows {
		read, sees := r.Read, r.Type
		if r.Mask != "" {
			read += " " + r.Mask
		}
		if sees == "" {
			sees = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Role, r.Column, read, sees, yn[r.Write], yn[r.Search], r.Rule)
	}
	return tw.Flush()
}
