package protomesh

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// DefaultTLSRefreshInterval is how often the TLS files are read again unless TLSFiles says
// otherwise (mesh/tls.ts: 60 s, as grpc-js' FileWatcherCertificateProvider is given there).
const DefaultTLSRefreshInterval = 60 * time.Second

// TLSFiles are a workload's mTLS files (PEM), as mesh/identity.ts writes them: the mesh CA's
// certificate (the trust bundle), the workload's certificate, whose one URI SAN is its SPIFFE ID
// spiffe://<trust-domain>/service/<name>, and its key.
type TLSFiles struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// RefreshInterval is how often the files are read again, so that replaced files (by rename)
	// serve new handshakes without a restart; 0 is DefaultTLSRefreshInterval.
	RefreshInterval time.Duration
	// TrustDomain is the mesh's SPIFFE trust domain; "" takes the one the CA certificate's
	// spiffe:// SAN names (mesh/identity.ts gives the CA the SAN URI:spiffe://<trust-domain>).
	TrustDomain string
}

// refreshInterval is RefreshInterval, or DefaultTLSRefreshInterval when it is not above 0.
func (f TLSFiles) refreshInterval() time.Duration {
	if f.RefreshInterval <= 0 {
		return DefaultTLSRefreshInterval
	}
	return f.RefreshInterval
}

// tlsMaterial is one good read of the files.
type tlsMaterial struct {
	certificate tls.Certificate
	roots       *x509.CertPool
	trustDomain string
}

// tlsSource reads TLSFiles and keeps the last good read: a read is tried again at most once per
// refresh interval, on the first handshake after it, so no goroutine outlives the server or the
// connection. A read that fails (a file missing or half written, or a key beside another
// certificate for an instant mid-rotation) keeps the previous pair, as mesh/tls-certificate-files.ts does.
type tlsSource struct {
	files  TLSFiles
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	material *tlsMaterial
	readAt   time.Time
}

// newTLSSource checks files; it reads nothing until [tlsSource.load] (Listen, Dial) or a handshake.
func newTLSSource(files TLSFiles, logger *slog.Logger) (*tlsSource, error) {
	if files.CAFile == "" || files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("tls: CAFile, CertFile and KeyFile must all be given")
	}
	if files.RefreshInterval < 0 {
		return nil, fmt.Errorf("tls: RefreshInterval must be >= 0, got %s", files.RefreshInterval)
	}
	files.RefreshInterval = files.refreshInterval()
	return &tlsSource{files: files, logger: logger.With("component", "tls"), now: time.Now}, nil
}

// load reads the files now, so that files unusable from the start are an error of Listen or Dial
// rather than of every handshake.
func (s *tlsSource) load() error {
	material, err := readTLSFiles(s.files)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.material, s.readAt = material, s.now()
	return nil
}

// trustDomain is the trust domain of the last good read ("" before the first).
func (s *tlsSource) trustDomain() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.material == nil {
		return ""
	}
	return s.material.trustDomain
}

// current is the material for a new handshake, read again once the refresh interval has passed.
func (s *tlsSource) current() (*tlsMaterial, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.material != nil && s.now().Sub(s.readAt) < s.files.RefreshInterval {
		return s.material, nil
	}
	s.readAt = s.now()
	material, err := readTLSFiles(s.files)
	if err != nil {
		if s.material == nil {
			return nil, err
		}
		s.logger.Warn("reading the TLS files failed; keeping the last good certificate", "err", err.Error())
		return s.material, nil
	}
	s.material = material
	return material, nil
}

func readTLSFiles(files TLSFiles) (*tlsMaterial, error) {
	// tls.LoadX509KeyPair refuses a key that is not the certificate's.
	certificate, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s: %w", files.CertFile, files.KeyFile, err)
	}
	caPEM, err := os.ReadFile(files.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", files.CAFile)
	}
	trustDomain := files.TrustDomain
	if trustDomain == "" {
		if trustDomain = trustDomainOfCA(caPEM); trustDomain == "" {
			return nil, fmt.Errorf("tls: TrustDomain must be given, the CA certificate in %s names no spiffe:// trust domain", files.CAFile)
		}
	}
	return &tlsMaterial{certificate: certificate, roots: roots, trustDomain: trustDomain}, nil
}

// trustDomainOfCA is the trust domain in the spiffe:// SAN of the first certificate of caPEM that
// has one; "" if none.
func trustDomainOfCA(caPEM []byte) string {
	for block, rest := pem.Decode(caPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		if certificate, err := x509.ParseCertificate(block.Bytes); err == nil {
			if id := spiffeIDOf(certificate); id != "" {
				return trustDomainOf(id)
			}
		}
	}
	return ""
}

// spiffeIDOf is the SPIFFE ID a certificate names: its one URI SAN with the spiffe scheme, or ""
// when it has none or more than one URI SAN (an X509-SVID has exactly one; mesh/identity.ts spiffeIdOf).
func spiffeIDOf(certificate *x509.Certificate) string {
	if len(certificate.URIs) != 1 || certificate.URIs[0].Scheme != "spiffe" {
		return ""
	}
	return certificate.URIs[0].String()
}

// trustDomainOf is the trust domain a SPIFFE ID names ("spiffe://td/service/x" is "td").
func trustDomainOf(spiffeID string) string {
	u, err := url.Parse(spiffeID)
	if err != nil || u.Scheme != "spiffe" {
		return ""
	}
	return strings.ToLower(u.Host)
}

// SPIFFEIDFor is the SPIFFE ID of a mesh service: spiffe://<trustDomain>/service/<service>
// (mesh/identity.ts spiffeIdFor).
func SPIFFEIDFor(trustDomain, service string) string {
	return "spiffe://" + trustDomain + "/service/" + service
}
