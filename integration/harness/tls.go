package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway certificate authority for tests. Its files live in a
// directory from t.TempDir.
type CA struct {
	Cert     *x509.Certificate
	Key      *ecdsa.PrivateKey
	CertPEM  []byte
	CertFile string // PEM, for sslrootcert, VAULT_CACERT and the like

	dir string
}

// CertPair is a certificate issued by a CA, with its key, as PEM in memory
// and in files.
type CertPair struct {
	CertFile string
	KeyFile  string
	CertPEM  []byte
	KeyPEM   []byte // PKCS#8
	CAFile   string // certificate of the issuing CA
}

// NewCA creates a self-signed ECDSA P-256 CA named name.
func NewCA(t TB, name string) *CA {
	t.Helper()
	ca := &CA{dir: t.TempDir()}
	tmpl := certTemplate(name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	pair, cert, key, err := ca.issue(tmpl, "ca", nil, nil)
	if err != nil {
		t.Fatalf("harness: new CA %q: %v", name, err)
	}
	ca.Cert, ca.Key, ca.CertPEM, ca.CertFile = cert, key, pair.CertPEM, pair.CertFile
	return ca
}

// Issue returns a server certificate for hosts: each host that parses as an
// IP address becomes an IP SAN, any other a DNS SAN. The first host is also
// the common name.
func (ca *CA) Issue(t TB, hosts ...string) CertPair {
	t.Helper()
	if len(hosts) == 0 {
		t.Fatalf("harness: Issue needs at least one host")
	}
	tmpl := certTemplate(hosts[0])
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	pair, _, _, err := ca.issue(tmpl, "server-"+hosts[0], ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("harness: issue server certificate for %v: %v", hosts, err)
	}
	return pair
}

// IssueClient returns a client certificate (for mutual TLS) whose common
// name is user, as PostgreSQL's `cert` authentication expects.
func (ca *CA) IssueClient(t TB, user string) CertPair {
	t.Helper()
	tmpl := certTemplate(user)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	pair, _, _, err := ca.issue(tmpl, "client-"+user, ca.Cert, ca.Key)
	if err != nil {
		t.Fatalf("harness: issue client certificate for %q: %v", user, err)
	}
	return pair
}

// Pool returns a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// certTemplate is a certificate valid from an hour ago for a day.
func certTemplate(cn string) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"pgcloak tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

// issue creates a key, signs tmpl with parent and parentKey (self-signed if
// parent is nil) and writes <name>.crt and <name>.key (0600) into the CA
// directory.
func (ca *CA) issue(tmpl *x509.Certificate, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (CertPair, *x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CertPair{}, nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return CertPair{}, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CertPair{}, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return CertPair{}, nil, nil, err
	}
	name += "-" + tmpl.SerialNumber.Text(16)[:8] // unique per issue
	pair := CertPair{
		CertFile: filepath.Join(ca.dir, name+".crt"),
		KeyFile:  filepath.Join(ca.dir, name+".key"),
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		CAFile:   ca.CertFile,
	}
	if pair.CAFile == "" { // the CA itself
		pair.CAFile = pair.CertFile
	}
	if err := os.WriteFile(pair.CertFile, pair.CertPEM, 0o644); err != nil {
		return CertPair{}, nil, nil, err
	}
	if err := os.WriteFile(pair.KeyFile, pair.KeyPEM, 0o600); err != nil {
		return CertPair{}, nil, nil, err
	}
	return pair, cert, key, nil
}
