package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/pgcloak/pgcloak/crypto"
	"github.com/pgcloak/pgcloak/internal/cputime"
)

// The cipher's own cost is measured in this process, once per round, so it
// sees the same machine as the proxies it is compared with: the CPU time of
// one Keyring.Decrypt (what pgcloak calls per protected value, without the
// proxy around it) of values shaped like the benchmark's rows.

// cipherCost is the CPU time of one operation, ns, per round.
type cipherCost struct {
	GCMOpen []float64 `json:"gcm_open_ns"` // randomized: the 100k-row SELECT's values
	SIVOpen []float64 `json:"siv_open_ns"` // deterministic: det_enc's phone
	GCMSeal []float64 `json:"gcm_seal_ns"` // randomized encrypt, nonce included: COPY FROM's values
}

// benchValues are plaintexts like one row of the encryption tables.
func benchValues(i int) [][]byte {
	return [][]byte{
		[]byte("Customer Name " + strconv.Itoa(i)),
		[]byte("customer" + strconv.Itoa(i) + "@example.com"),
		[]byte(fmt.Sprintf("+81-3-5555-%04d", i%10000)),
	}
}

// measureCipher adds one measurement of each operation to c.
func (c *cipherCost) measure() error {
	kr := crypto.NewKeyring("bench")
	if err := kr.Add(1, crypto.NewDEK()); err != nil {
		return err
	}
	col, err := crypto.NewColumnID("public", "big_enc", "email")
	if err != nil {
		return err
	}
	pts := benchValues(54321)
	var gcm, siv [][]byte
	for _, p := range pts {
		v, err := kr.Encrypt(nil, p, col, crypto.Randomized)
		if err != nil {
			return err
		}
		gcm = append(gcm, v)
		if v, err = kr.Encrypt(nil, p, col, crypto.Deterministic); err != nil {
			return err
		}
		siv = append(siv, v)
	}
	dst := make([]byte, 0, 256)
	open := func(vs [][]byte) func(int) error {
		return func(i int) error {
			_, err := kr.Decrypt(dst, vs[i%len(vs)], col)
			return err
		}
	}
	for _, m := range []struct {
		into *[]float64
		op   func(int) error
	}{
		{&c.GCMOpen, open(gcm)},
		{&c.SIVOpen, open(siv)},
		{&c.GCMSeal, func(i int) error {
			_, err := kr.Encrypt(dst, pts[i%len(pts)], col, crypto.Randomized)
			return err
		}},
	} {
		ns, err := cpuPerOp(m.op)
		if err != nil {
			return err
		}
		*m.into = append(*m.into, ns)
	}
	return nil
}

// cpuPerOp runs op for about 300 ms and returns the process CPU time per
// call, in ns. The harness does nothing else meanwhile (its children are
// other processes), so process CPU time is op's.
func cpuPerOp(op func(int) error) (float64, error) {
	start := cputime.Self()
	deadline := time.Now().Add(300 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		for range 1000 {
			if err := op(n); err != nil {
				return 0, err
			}
			n++
		}
	}
	return float64(cputime.Self()-start) / float64(n), nil
}

// write prints the medians.
func (c *cipherCost) write(out io.Writer) {
	fmt.Fprintf(out, "\ncipher alone (crypto.Keyring in this process, CPU ns per value, median of %d): AES-GCM open %.0f, AES-SIV open %.0f, AES-GCM seal %.0f\n",
		len(c.GCMOpen), median(c.GCMOpen), median(c.SIVOpen), median(c.GCMSeal))
}
