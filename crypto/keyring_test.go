package crypto

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pgcloak/pgcloak/crypto/internal/siv"
)

var modes = []Mode{Randomized, Deterministic}

func mustColumn(t testing.TB, schema, table, column string) ColumnID {
	t.Helper()
	c, err := NewColumnID(schema, table, column)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testDEK is the key of the worked examples in FORMAT.md: bytes 0x00…0x1f.
func testDEK() []byte {
	k := make([]byte, DEKSize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func newTestKeyring(t testing.TB, versions ...uint32) *Keyring {
	t.Helper()
	kr := NewKeyring("pii")
	for _, v := range versions {
		dek := testDEK()
		binary.BigEndian.PutUint32(dek, v) // a different key per version
		if err := kr.Add(v, dek); err != nil {
			t.Fatal(err)
		}
	}
	return kr
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The worked examples of FORMAT.md, computed independently with OpenSSL
// (Python cryptography 48: HKDF, AESSIV, AESGCM) from the DEK 0x00…0x1f,
// version 1, column public.users.email, plaintext "alice@example.com".
const (
	goldenGCMKey        = "eec394dc5d44a83d6b01a62482babd653d56a17f21a91cf7ed6e80103d854478"
	goldenSIVKey        = "099f5e84425f8af60fddc2ef6d4d1f92802c5fdd4159c972922debc9667396a0b305fc9c76fc2c8e7119d0fb80c1dec92e342cd07d2fd4c691c8d8a0e579d81e"
	goldenDeterministic = "504743010200000001" + "3693f78c00d19aa847e654f5ba053697" + "d0337b7e024a7392f656e2b7e712166535"
	goldenRandomized    = "504743010100000001" + "f0f1f2f3f4f5f6f7f8f9fafb" +
		"d61c4aab84914c85be3d0619da0ef26d1b" + "989b561708642027a93689cb164cd495"
	goldenPlaintext = "alice@example.com"
)

func TestGoldenValues(t *testing.T) {
	sub, err := deriveSubkeys(testDEK())
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sub.gcm[:]) != goldenGCMKey || hex.EncodeToString(sub.siv[:]) != goldenSIVKey {
		t.Fatalf("derived keys differ from FORMAT.md:\ngcm %x\nsiv %x", sub.gcm, sub.siv)
	}
	kr := NewKeyring("pii")
	if err := kr.Add(1, testDEK()); err != nil {
		t.Fatal(err)
	}
	col := mustColumn(t, "public", "users", "email")
	got, err := kr.Encrypt(nil, []byte(goldenPlaintext), col, Deterministic)
	if err != nil || hex.EncodeToString(got) != goldenDeterministic {
		t.Fatalf("Encrypt = %x, %v\nwant      %s", got, err, goldenDeterministic)
	}
	for _, v := range []string{goldenDeterministic, goldenRandomized} {
		pt, err := kr.Decrypt(nil, unhex(t, v), col)
		if err != nil || string(pt) != goldenPlaintext {
			t.Fatalf("Decrypt(%s) = %q, %v", v[:18], pt, err)
		}
	}
}

// TestStandardConstructions rebuilds values with nothing but crypto/cipher's
// GCM and RFC 5297 AES-SIV over the documented header, AD and derived keys, so
// the format is exactly what FORMAT.md says.
func TestStandardConstructions(t *testing.T) {
	kr := newTestKeyring(t, 7)
	dek := testDEK()
	binary.BigEndian.PutUint32(dek, 7)
	sub, _ := deriveSubkeys(dek)
	col := mustColumn(t, "s", "t", "c")
	ad := []byte("s\x00t\x00c")
	pt := []byte("standard")

	v, _ := kr.Encrypt(nil, pt, col, Randomized)
	blk, _ := aes.NewCipher(sub.gcm[:])
	gcm, _ := cipher.NewGCM(blk)
	hdr := unhex(t, "504743010100000007")
	if !bytes.Equal(v[:9], hdr) {
		t.Fatalf("header = %x", v[:9])
	}
	got, err := gcm.Open(nil, v[9:21], v[21:], append(bytes.Clone(hdr), ad...))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("plain AES-GCM open: %v", err)
	}

	v, _ = kr.Encrypt(nil, pt, col, Deterministic)
	s, _ := siv.New(sub.siv[:])
	hdr = unhex(t, "504743010200000007")
	if want := s.Seal(bytes.Clone(hdr), pt, hdr, ad); !bytes.Equal(v, want) {
		t.Fatalf("AES-SIV value = %x, want %x", v, want)
	}
}

func TestRoundTrip(t *testing.T) {
	kr := newTestKeyring(t, 1)
	col := mustColumn(t, "public", "customers", "email")
	for _, mode := range modes {
		for _, n := range []int{0, 1, 15, 16, 17, 64, 1000, 64 << 10, 1 << 20} {
			pt := make([]byte, n)
			for i := range pt {
				pt[i] = byte(i*7 + n)
			}
			v, err := kr.Encrypt(nil, pt, col, mode)
			if err != nil {
				t.Fatalf("%v %d: %v", mode, n, err)
			}
			if len(v) != n+mode.Overhead() || !IsCiphertext(v) {
				t.Fatalf("%v %d: len %d, IsCiphertext %v", mode, n, len(v), IsCiphertext(v))
			}
			if n >= 16 && bytes.Contains(v, pt[:16]) {
				t.Fatalf("%v %d: plaintext visible in value", mode, n)
			}
			got, err := kr.Decrypt([]byte("keep"), v, col)
			if err != nil || string(got[:4]) != "keep" || !bytes.Equal(got[4:], pt) {
				t.Fatalf("%v %d: Decrypt: %v", mode, n, err)
			}
			// Appending after existing bytes in dst keeps them.
			v2, _ := kr.Encrypt([]byte("prefix"), pt, col, mode)
			if string(v2[:6]) != "prefix" {
				t.Fatalf("%v %d: dst prefix lost", mode, n)
			}
			if got, err := kr.Decrypt(nil, v2[6:], col); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%v %d: Decrypt after prefix: %v", mode, n, err)
			}
		}
	}
}

// TestEveryBitFlip flips each bit of a value of a 64-byte plaintext (header,
// nonce or SIV, ciphertext, tag) and expects an error, never plaintext. The
// decrypting keyring holds every version one bit away from the value's, so a
// flipped key-version bit must fail authentication, not just the lookup.
func TestEveryBitFlip(t *testing.T) {
	const version = 0x01000001
	enc := newTestKeyring(t, version)
	dec := newTestKeyring(t, version)
	for b := range 32 {
		dec.Add(version^1<<b, NewDEK())
	}
	col := mustColumn(t, "public", "customers", "email")
	pt := bytes.Repeat([]byte("0123456789abcdef"), 4)
	for _, mode := range modes {
		v, err := enc.Encrypt(nil, pt, col, mode)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := dec.Decrypt(nil, v, col); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%v: unflipped value: %v", mode, err)
		}
		for i := range len(v) * 8 {
			bad := bytes.Clone(v)
			bad[i/8] ^= 1 << (i % 8)
			dst := make([]byte, 0, 128)
			got, err := dec.Decrypt(dst, bad, col)
			switch {
			case err == nil:
				t.Fatalf("%v: flipping bit %d went undetected (got %q)", mode, i, got)
			case got != nil || !bytes.Equal(dst[:cap(dst)], make([]byte, 128)):
				t.Fatalf("%v: bit %d: plaintext returned or left in dst", mode, i)
			case i < 24 && err != ErrNotCiphertext, // magic
				i >= 24 && i < 40 && !errors.Is(err, ErrUnsupportedFormat), // format version, mode
				i >= 40 && err != ErrAuthFailed:                            // key version, body
				t.Fatalf("%v: bit %d (byte %d): unexpected error %v", mode, i, i/8, err)
			}
		}
		for n := range len(v) {
			if _, err := dec.Decrypt(nil, v[:n], col); err == nil {
				t.Fatalf("%v: truncated to %d bytes decrypted", mode, n)
			}
		}
	}
}

func TestWrongColumn(t *testing.T) {
	kr := newTestKeyring(t, 1)
	email := mustColumn(t, "public", "customers", "email")
	others := []ColumnID{
		mustColumn(t, "public", "customers", "phone"),
		mustColumn(t, "public", "suppliers", "email"),
		mustColumn(t, "archive", "customers", "email"),
		mustColumn(t, "public", "customers", "Email"),
	}
	for _, mode := range modes {
		v, _ := kr.Encrypt(nil, []byte("alice@example.com"), email, mode)
		for _, o := range others {
			if _, err := kr.Decrypt(nil, v, o); err != ErrAuthFailed {
				t.Errorf("%v: value of %v decrypted as %v: %v", mode, email, o, err)
			}
		}
	}
	// NUL-joined identities cannot collide the way dotted names would.
	a, b := mustColumn(t, "a.b", "c", "d"), mustColumn(t, "a", "b.c", "d")
	v, _ := kr.Encrypt(nil, []byte("x"), a, Deterministic)
	if _, err := kr.Decrypt(nil, v, b); err != ErrAuthFailed {
		t.Errorf("schema/table boundary not bound: %v", err)
	}
}

func TestDeterminism(t *testing.T) {
	kr := newTestKeyring(t, 1)
	c1 := mustColumn(t, "public", "customers", "email")
	c2 := mustColumn(t, "public", "customers", "email2")
	pt := []byte("alice@example.com")

	a, _ := kr.Encrypt(nil, pt, c1, Deterministic)
	b, _ := kr.Encrypt(nil, pt, c1, Deterministic)
	if !bytes.Equal(a, b) {
		t.Error("deterministic: equal inputs gave different values")
	}
	if c, _ := kr.Encrypt(nil, pt, c2, Deterministic); bytes.Equal(a, c) {
		t.Error("deterministic: two columns gave equal values")
	}
	if d, _ := kr.Encrypt(nil, []byte("alice@example.con"), c1, Deterministic); bytes.Equal(a[:25], d[:25]) {
		t.Error("deterministic: different inputs gave the same SIV")
	}
	other := newTestKeyring(t, 2)
	if e, _ := other.Encrypt(nil, pt, c1, Deterministic); bytes.Equal(a[9:], e[9:]) {
		t.Error("deterministic: two keys gave equal bodies")
	}

	seen := map[string]bool{}
	for range 1000 {
		v, _ := kr.Encrypt(nil, pt, c1, Randomized)
		if seen[string(v)] || seen["n"+string(v[9:21])] {
			t.Fatal("randomized: repeated value or nonce")
		}
		seen[string(v)], seen["n"+string(v[9:21])] = true, true
	}
}

func TestVersions(t *testing.T) {
	col := mustColumn(t, "public", "customers", "email")
	kr := NewKeyring("pii")
	if _, err := kr.Encrypt(nil, []byte("x"), col, Randomized); !errors.Is(err, ErrNoActiveKey) || !strings.Contains(err.Error(), `"pii"`) {
		t.Fatalf("empty keyring: %v", err)
	}
	if _, ok := kr.Active(); ok {
		t.Fatal("empty keyring has an active version")
	}
	k1, k2 := NewDEK(), NewDEK()
	if err := kr.Add(1, k1); err != nil {
		t.Fatal(err)
	}
	v1, _ := kr.Encrypt(nil, []byte("one"), col, Randomized)
	if err := kr.Add(2, k2); err != nil {
		t.Fatal(err)
	}
	if v, ok := kr.Active(); !ok || v != 2 {
		t.Fatalf("Active = %d, %v", v, ok)
	}
	v2, _ := kr.Encrypt(nil, []byte("two"), col, Deterministic)
	if h, _ := ParseHeader(v2); h.KeyVersion != 2 || h.Mode != Deterministic {
		t.Fatalf("new value header = %+v", h)
	}
	for _, v := range [][]byte{v1, v2} {
		if _, err := kr.Decrypt(nil, v, col); err != nil {
			t.Fatalf("old and new versions must both decrypt: %v", err)
		}
	}
	// Re-adding the same key is a no-op; a different key under a loaded version is refused.
	if err := kr.Add(1, k1); err != nil {
		t.Fatalf("re-Add same key: %v", err)
	}
	if err := kr.Add(1, k2); err == nil {
		t.Fatal("Add accepted a second key for version 1")
	}
	if err := kr.Add(0, k1); err == nil {
		t.Fatal("Add accepted version 0")
	}
	if err := kr.Add(3, k1[:16]); err == nil {
		t.Fatal("Add accepted a 16-byte key")
	}
	// Out-of-order adds: the highest version encrypts.
	if err := kr.Add(0xffffffff, NewDEK()); err != nil {
		t.Fatal(err)
	}
	if err := kr.Add(5, NewDEK()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(kr.Versions()); got != "[4294967295 5 2 1]" {
		t.Fatalf("Versions = %s", got)
	}

	// A value under a version this instance has not loaded.
	other := NewKeyring("pii")
	other.Add(9, NewDEK())
	v9, _ := other.Encrypt(nil, []byte("nine"), col, Randomized)
	_, err := kr.Decrypt(nil, v9, col)
	var uk *UnknownKeyVersionError
	if !errors.As(err, &uk) || uk.Keyring != "pii" || uk.Version != 9 {
		t.Fatalf("unknown version: %v", err)
	}
	if want := `keyring "pii" has no key version 9 loaded`; !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q lacks %q", err, want)
	}
	// Same version number, different key bytes: authentication fails.
	other2 := NewKeyring("pii")
	other2.Add(1, NewDEK())
	w1, _ := other2.Encrypt(nil, []byte("x"), col, Deterministic)
	if _, err := kr.Decrypt(nil, w1, col); err != ErrAuthFailed {
		t.Fatalf("same version, other key: %v", err)
	}
}

func TestZero(t *testing.T) {
	kr := newTestKeyring(t, 1, 2)
	col := mustColumn(t, "public", "customers", "email")
	v, _ := kr.Encrypt(nil, []byte("x"), col, Randomized)
	snap := kr.snap.Load()
	kr.Zero()
	for _, nk := range snap.keys {
		if nk.sub.gcm != [32]byte{} || nk.sub.siv != [64]byte{} || nk.sub.check != [32]byte{} {
			t.Fatal("subkeys not wiped")
		}
	}
	if _, err := kr.Encrypt(nil, []byte("x"), col, Randomized); err != ErrClosed {
		t.Fatalf("Encrypt after Zero: %v", err)
	}
	if _, err := kr.Decrypt(nil, v, col); err != ErrClosed {
		t.Fatalf("Decrypt after Zero: %v", err)
	}
	if err := kr.Add(3, NewDEK()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Zero: %v", err)
	}
	if !strings.Contains(kr.String(), "closed") {
		t.Fatalf("String = %q", kr.String())
	}
}

func TestInvalidInputs(t *testing.T) {
	kr := newTestKeyring(t, 1)
	col := mustColumn(t, "public", "customers", "email")
	if _, err := kr.Encrypt(nil, []byte("x"), ColumnID{}, Randomized); err != ErrInvalidColumn {
		t.Fatalf("zero column: %v", err)
	}
	if _, err := kr.Encrypt(nil, []byte("x"), col, Mode(3)); err == nil {
		t.Fatal("Encrypt accepted mode 3")
	}
	v, _ := kr.Encrypt(nil, []byte("x"), col, Randomized)
	if _, err := kr.Decrypt(nil, v, ColumnID{}); err != ErrInvalidColumn {
		t.Fatalf("zero column: %v", err)
	}
	if _, err := kr.Decrypt(nil, []byte("alice@example.com"), col); err != ErrNotCiphertext {
		t.Fatalf("plaintext: %v", err)
	}
	bad := bytes.Clone(v)
	bad[3] = 2
	if _, err := kr.Decrypt(nil, bad, col); !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("format 2: %v", err)
	}
}

// TestRedaction checks that no formatting path prints key bytes.
func TestRedaction(t *testing.T) {
	dek := DEK(bytes.Repeat([]byte{0xab}, DEKSize))
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("loaded", "dek", dek)
	kr := newTestKeyring(t, 1)
	outs := []string{
		fmt.Sprint(dek), fmt.Sprintf("%v %+v %#v %s %x %X %q %d", dek, dek, dek, dek, dek, dek, dek, dek),
		sb.String(), fmt.Sprintf("%v %+v %s", kr, kr, kr),
	}
	if b, _ := dek.MarshalText(); string(b) != "[redacted]" {
		t.Fatalf("MarshalText = %s", b)
	}
	for _, s := range outs {
		if strings.Contains(strings.ToLower(s), "abab") || strings.Contains(s, "171") {
			t.Fatalf("key bytes in %q", s)
		}
	}
	if !strings.Contains(outs[0], "[redacted]") {
		t.Fatalf("DEK prints as %q", outs[0])
	}
}

// countingKMS counts calls, to show that only loading reaches the KMS.
type countingKMS struct {
	mu    sync.Mutex
	calls int
	dek   []byte
}

func (c *countingKMS) Wrap(ctx context.Context, name string, dek []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return []byte("wrapped"), nil
}

func (c *countingKMS) Unwrap(ctx context.Context, name string, wrapped []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if string(wrapped) != "wrapped" {
		return nil, errors.New("bad wrapped key")
	}
	return bytes.Clone(c.dek), nil
}

func (c *countingKMS) Rewrap(ctx context.Context, name string, wrapped []byte) ([]byte, error) {
	return c.Wrap(ctx, name, nil)
}

func TestAddWrapped(t *testing.T) {
	kms := &countingKMS{dek: testDEK()}
	kr := NewKeyring("pii")
	if err := kr.AddWrapped(context.Background(), kms, "pgcloak-pii", 1, []byte("wrapped")); err != nil {
		t.Fatal(err)
	}
	if err := kr.AddWrapped(context.Background(), kms, "pgcloak-pii", 2, []byte("junk")); err == nil || !strings.Contains(err.Error(), "pgcloak-pii") {
		t.Fatalf("unwrap failure: %v", err)
	}
	col := mustColumn(t, "public", "users", "email")
	before := kms.calls
	for range 1000 {
		v, _ := kr.Encrypt(nil, []byte("x"), col, Randomized)
		kr.Decrypt(nil, v, col)
	}
	if kms.calls != before {
		t.Fatalf("Encrypt/Decrypt called the KMS %d times", kms.calls-before)
	}
	if pt, err := kr.Decrypt(nil, unhex(t, goldenDeterministic), col); err != nil || string(pt) != goldenPlaintext {
		t.Fatalf("key added through KMS: %v", err)
	}
}

// TestConcurrent runs readers against a writer; run with -race.
func TestConcurrent(t *testing.T) {
	kr := newTestKeyring(t, 1)
	col := mustColumn(t, "public", "customers", "email")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, 0, 256)
			for i := range 2000 {
				pt := fmt.Appendf(nil, "g%d-%d", g, i)
				v, err := kr.Encrypt(dst[:0], pt, col, modes[i%2])
				if err != nil {
					t.Error(err)
					return
				}
				got, err := kr.Decrypt(nil, v, col)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("round trip: %v", err)
					return
				}
			}
		}()
	}
	for v := uint32(2); v < 50; v++ {
		if err := kr.Add(v, NewDEK()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	kr := newTestKeyring(t, 1)
	col := mustColumn(t, "public", "customers", "email")
	pt := make([]byte, 64)
	dst := make([]byte, 0, 256)
	for _, mode := range modes {
		v, _ := kr.Encrypt(nil, pt, col, mode)
		if n := testing.AllocsPerRun(200, func() { kr.Encrypt(dst[:0], pt, col, mode) }); n != 0 {
			t.Errorf("%v Encrypt into a buffer with room: %v allocs", mode, n)
		}
		if n := testing.AllocsPerRun(200, func() { kr.Decrypt(dst[:0], v, col) }); n != 0 {
			t.Errorf("%v Decrypt into a buffer with room: %v allocs", mode, n)
		}
		if n := testing.AllocsPerRun(200, func() { kr.Encrypt(nil, pt, col, mode) }); n != 1 {
			t.Errorf("%v Encrypt into nil: %v allocs, want 1 (the output)", mode, n)
		}
	}
}

// TestSIVStateCache checks that the per-column S2V cache never serves a state
// made for another key: every value must equal the one a fresh ColumnID (no
// cache) gives, across rotation and across keyrings sharing a ColumnID.
func TestSIVStateCache(t *testing.T) {
	col := mustColumn(t, "public", "customers", "email")
	fresh := func() ColumnID { return mustColumn(t, "public", "customers", "email") }
	a, b := newTestKeyring(t, 1), newTestKeyring(t, 5)
	pt := []byte("alice@example.com")
	check := func(kr *Keyring) []byte {
		t.Helper()
		got, _ := kr.Encrypt(nil, pt, col, Deterministic)
		want, _ := kr.Encrypt(nil, pt, fresh(), Deterministic)
		if !bytes.Equal(got, want) {
			t.Fatalf("cached column state gave %x, want %x", got, want)
		}
		return got
	}
	v1 := check(a)
	check(b)
	check(a)
	a.Add(2, NewDEK())
	v2 := check(a)
	// Old and new versions decrypt in any order with the shared ColumnID.
	for _, v := range [][]byte{v1, v2, v1, v2} {
		if got, err := a.Decrypt(nil, v, col); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Decrypt: %v", err)
		}
	}
	if _, err := b.Decrypt(nil, v2, col); err == nil {
		t.Fatal("keyring b decrypted a's value")
	}
}

func TestDrop(t *testing.T) {
	kr := newTestKeyring(t, 1, 2)
	col := mustColumn(t, "public", "customers", "email")
	old, err := kr.Encrypt(nil, []byte("x"), col, Randomized) // under 2
	if err != nil {
		t.Fatal(err)
	}
	if kr.Drop(2) || kr.Drop(7) {
		t.Fatal("dropped the active version, or one not loaded")
	}
	if !kr.Drop(1) || kr.Has(1) || !kr.Has(2) {
		t.Fatalf("versions after Drop(1): %v", kr.Versions())
	}
	if _, err := kr.Decrypt(nil, old, col); err != nil {
		t.Fatal(err)
	}
}
