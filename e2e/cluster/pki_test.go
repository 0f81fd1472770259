package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
	"time"
)

// The PKI is what every component trusts; a wrong usage or chain shows up
// only as an opaque TLS error in a component's log, so it is checked here,
// without a stack.
func TestPKIChains(t *testing.T) {
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("CA does not parse")
	}
	serving := readCert(t, p.ServingCert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate for 127.0.0.1: %v", err)
	}
	if _, err := serving.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default.svc",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving certificate for kubernetes.default.svc: %v", err)
	}
	admin := readCert(t, p.AdminCert)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate: %v", err)
	}
	if admin.Subject.CommonName != adminUser || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != adminGroup {
		t.Errorf("admin subject %v, want CN=%s O=%s", admin.Subject, adminUser, adminGroup)
	}
	if time.Until(admin.NotAfter) < 24*time.Hour {
		t.Errorf("admin certificate expires %v, too soon for a long test run", admin.NotAfter)
	}
	for _, f := range []string{p.SAKey, p.SAPub, p.ServingKey, p.AdminKey} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode(b); blk == nil {
			t.Errorf("%s is not PEM", f)
		}
	}
}

func TestPrometheusConfigDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{2 * time.Second: "2s", 1500 * time.Millisecond: "1500ms", time.Minute: "60s"} {
		if got := model(d); got != want {
			t.Errorf("model(%v) = %q, want %q", d, got, want)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}
