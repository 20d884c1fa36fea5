package siv

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC5297 runs the two examples of RFC 5297 Appendix A. A.2 is the only
// vector with several associated-data components (two ADs and a nonce).
func TestRFC5297(t *testing.T) {
	tests := []struct {
		name     string
		key      string
		ad       []string
		pt, want string
	}{
		{
			name: "A.1 deterministic",
			key:  "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
			ad:   []string{"101112131415161718191a1b1c1d1e1f2021222324252627"},
			pt:   "112233445566778899aabbccddee",
			want: "85632d07c6e8f37f950acd320a2ecc93" + "40c02b9690c4dc04daef7f6afe5c",
		},
		{
			name: "A.2 nonce-based",
			key:  "7f7e7d7c7b7a79787776757473727170404142434445464748494a4b4c4d4e4f",
			ad: []string{
				"00112233445566778899aabbccddeeffdeaddadadeaddadaffeeddccbbaa99887766554433221100",
				"102030405060708090a0",
				"09f911029d74e35bd84156c5635688c0",
			},
			pt: "7468697320697320736f6d6520706c61696e7465787420746f20656e6372797074207573696e67205349562d414553",
			want: "7bdb6e3b432667eb06f4d14bff2fbd0f" +
				"cb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(unhex(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			var ad [][]byte
			for _, a := range tc.ad {
				ad = append(ad, unhex(t, a))
			}
			got := c.Seal([]byte("prefix"), unhex(t, tc.pt), ad...)
			if want := "prefix" + string(unhex(t, tc.want)); string(got) != want {
				t.Fatalf("Seal = %x\nwant   %x", got[6:], want[6:])
			}
			pt, err := c.Open(nil, got[6:], ad...)
			if err != nil || !bytes.Equal(pt, unhex(t, tc.pt)) {
				t.Fatalf("Open = %x, %v", pt, err)
			}
			// Absorbing the ADs ahead of time gives the same result.
			st := c.Init()
			for _, a := range ad {
				st = c.Absorb(st, a)
			}
			if from := c.SealFrom(nil, &st, unhex(t, tc.pt)); !bytes.Equal(from, got[6:]) {
				t.Fatalf("SealFrom = %x", from)
			}
			if pt, err := c.OpenFrom(nil, &st, got[6:]); err != nil || !bytes.Equal(pt, unhex(t, tc.pt)) {
				t.Fatalf("OpenFrom = %x, %v", pt, err)
			}
			// Dropping or reordering an AD component must fail.
			if _, err := c.Open(nil, got[6:], ad[:len(ad)-1]...); err != ErrOpen {
				t.Fatalf("Open with fewer ADs: %v", err)
			}
		})
	}
}

// TestWycheproof runs every AES-SIV-CMAC case of Project Wycheproof (see
// testdata/README.md): valid ones must seal to the expected bytes and open,
// invalid ones must not open.
func TestWycheproof(t *testing.T) {
	raw, err := os.ReadFile("testdata/aes_siv_cmac_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		TestGroups []struct {
			KeySize int
			Tests   []struct {
				TcID              int
				Comment           string
				Key, Aad, Msg, Ct string
				Result            string
			}
		}
	}
	if err := json.Unmarshal(raw, &suite); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range suite.TestGroups {
		for _, tc := range g.Tests {
			n++
			key, ad, msg, ct := unhex(t, tc.Key), unhex(t, tc.Aad), unhex(t, tc.Msg), unhex(t, tc.Ct)
			c, err := New(key)
			if err != nil {
				if tc.Result == "valid" {
					t.Errorf("tc %d (%s): New: %v", tc.TcID, tc.Comment, err)
				}
				continue
			}
			pt, err := c.Open(nil, ct, ad)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(pt, msg) {
					t.Errorf("tc %d (%s): Open = %x, %v", tc.TcID, tc.Comment, pt, err)
				}
				if got := c.Seal(nil, msg, ad); !bytes.Equal(got, ct) {
					t.Errorf("tc %d (%s): Seal = %x, want %x", tc.TcID, tc.Comment, got, ct)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tc %d (%s): Open succeeded on an invalid case", tc.TcID, tc.Comment)
				}
			}
		}
	}
	if n < 400 {
		t.Fatalf("ran only %d cases", n)
	}
}

// TestCTR checks both CTR paths (per-block and cipher.NewCTR) against
// cipher.NewCTR for lengths around the block size and the switch-over.
func TestCTR(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 64)
	c, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := aes.NewCipher(key[32:])
	v := unhex(t, "ffffffffffffffffffffffffffffffff") // counter wraps past 2^64
	q := bytes.Clone(v)
	q[8] &= 0x7f
	q[12] &= 0x7f
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, bigCTR - 1, bigCTR, bigCTR + 1, 1000} {
		src := bytes.Repeat([]byte{0xa5}, n)
		want := make([]byte, n)
		cipher.NewCTR(blk, q).XORKeyStream(want, src)
		got := make([]byte, n)
		vv := bytes.Clone(v)
		c.xorCTRScratch(got, src, vv, vv)
		if !bytes.Equal(got, want) {
			t.Errorf("n=%d: xorCTR differs from cipher.NewCTR", n)
		}
		if !bytes.Equal(vv, v) {
			t.Errorf("n=%d: xorCTR did not restore v", n)
		}
	}
}

func TestDbl(t *testing.T) {
	// RFC 4493 subkey example: L = AES-128(2b7e1516…, 0), K1 = dbl(L), K2 = dbl(K1).
	var b [16]byte
	copy(b[:], unhex(t, "7df76b0c1ab899b33e42f047b91b546f"))
	dbl(&b)
	if got := hex.EncodeToString(b[:]); got != "fbeed618357133667c85e08f7236a8de" {
		t.Fatalf("K1 = %s", got)
	}
	dbl(&b)
	if got := hex.EncodeToString(b[:]); got != "f7ddac306ae266ccf90bc11ee46d513b" {
		t.Fatalf("K2 = %s", got)
	}
}

func TestOpenRejectsShortAndFlips(t *testing.T) {
	c, _ := New(make([]byte, 64))
	ad := []byte("ad")
	for _, n := range []int{0, 5, 16, 40} {
		ct := c.Seal(nil, bytes.Repeat([]byte{1}, n), ad)
		for i := range len(ct) * 8 {
			bad := bytes.Clone(ct)
			bad[i/8] ^= 1 << (i % 8)
			dst := make([]byte, 0, 64)
			if _, err := c.Open(dst, bad, ad); err != ErrOpen {
				t.Fatalf("n=%d bit %d: err = %v", n, i, err)
			}
			if !bytes.Equal(dst[:cap(dst)], make([]byte, 64)) {
				t.Fatalf("n=%d bit %d: unauthenticated plaintext left in dst", n, i)
			}
		}
		if _, err := c.Open(nil, ct[:len(ct)-1], ad); err != ErrOpen {
			t.Fatalf("truncated: %v", err)
		}
	}
	if _, err := c.Open(nil, make([]byte, 15), ad); err != ErrOpen {
		t.Fatalf("15-byte input: %v", err)
	}
}

func TestSealOpenAllocs(t *testing.T) {
	c, _ := New(make([]byte, 64))
	pt := make([]byte, 64)
	ad1, ad2 := []byte("PGC\x01\x02\x00\x00\x00\x01"), []byte("public\x00users\x00email")
	dst := make([]byte, 0, 256)
	ct := c.Seal(nil, pt, ad1, ad2)
	if n := testing.AllocsPerRun(100, func() { c.Seal(dst, pt, ad1, ad2) }); n != 0 {
		t.Errorf("Seal allocs = %v", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.Open(dst, ct, ad1, ad2) }); n != 0 {
		t.Errorf("Open allocs = %v", n)
	}
}
