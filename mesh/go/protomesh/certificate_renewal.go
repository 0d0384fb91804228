package protomesh

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"time"

	certificatev1 "github.com/protomesh/protomesh/generated/go/protomesh/certificate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Certificate renewal tunables (mesh/certificate-renewal.ts).
const (
	// renewAtFraction of a certificate's validity passes before it is renewed (SPIRE's agent
	// renews at one half), leaving the other half for retries while it still serves.
	renewAtFraction = 0.5
	// signCertificateTimeout bounds one SignCertificate call: the control plane signs with openssl.
	signCertificateTimeout = 10 * time.Second
	// renewRetryInitial and renewRetryMax bound the backoff between failed renewals.
	renewRetryInitial = 500 * time.Millisecond
	renewRetryMax     = 30 * time.Second
)

// certificateRenewer keeps a workload's certificate files fresh (mesh/certificate-renewal.ts):
// once half of the certificate's validity has passed, it makes a new EC P-256 key and CSR, asks
// the control plane's protomesh.certificate.v1.CertificateService to sign it over mTLS with the
// current certificate, writes the key then the certificate over the files by rename and has the
// server's TLS source read them at once. New handshakes then use the new certificate; open
// connections keep theirs. A failure is logged and retried with backoff while the current
// certificate serves; a control plane that issues no certificates (UNIMPLEMENTED: it holds no CA
// key) ends the renewals with one warning.
type certificateRenewer struct {
	source *tlsSource
	conn   *grpc.ClientConn
	client certificatev1.CertificateServiceClient
	logger *slog.Logger
	random func() float64

	stopped chan struct{}
	done    chan struct{}
}

// newCertificateRenewer makes the renewer of source's files through the control plane at
// controlPlane, reached over mTLS with them, requiring its SPIFFE ID.
func newCertificateRenewer(controlPlane string, source *tlsSource, logger *slog.Logger, random func() float64) (*certificateRenewer, error) {
	conn, err := grpc.NewClient(controlPlane, grpc.WithTransportCredentials(clientTLSCredentials(source, ControlPlaneService)))
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = mathrand.Float64
	}
	return &certificateRenewer{
		source:  source,
		conn:    conn,
		client:  certificatev1.NewCertificateServiceClient(conn),
		logger:  logger.With("component", "certificate-renewal", "certFile", source.files.CertFile),
		random:  random,
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// start renews in the background, first when the certificate on disk is due.
func (r *certificateRenewer) start() { go r.run() }

// stop ends the renewals, waiting for one in flight, and closes the channel.
func (r *certificateRenewer) stop() {
	select {
	case <-r.stopped:
	default:
		close(r.stopped)
	}
	<-r.done
	_ = r.conn.Close()
}

func (r *certificateRenewer) run() {
	defer close(r.done)
	retry := &Backoff{Initial: renewRetryInitial, Multiplier: 1.6, Jitter: 0.2, Max: renewRetryMax, Random: r.random}
	current, err := readCertificate(r.source.files.CertFile)
	wait := time.Duration(0)
	if err == nil {
		wait = time.Until(renewalDue(current))
	}
	for {
		select {
		case <-r.stopped:
			return
		case <-time.After(max(0, wait)):
		}
		renewed, err := r.renew()
		switch {
		case err == nil:
			retry.Reset()
			// Never at once again: a certificate already past its half (a clock ahead of the
			// control plane's) must not make renewals spin.
			wait = max(renewRetryInitial, time.Until(renewalDue(renewed)))
		case status.Code(err) == codes.Unimplemented:
			r.logger.Warn("the control plane issues no certificates (it holds no CA key): this certificate will not be renewed")
			return
		default:
			wait = retry.Next()
			r.logger.Error("certificate renewal failed; the current certificate serves until it expires", "err", err.Error(), "retryMs", wait.Milliseconds())
		}
	}
}

// renewalDue is when certificate is renewed: renewAtFraction of its validity after it began.
func renewalDue(certificate *x509.Certificate) time.Time {
	validity := certificate.NotAfter.Sub(certificate.NotBefore)
	return certificate.NotBefore.Add(time.Duration(float64(validity) * renewAtFraction))
}

// renew renews now: a new key and certificate for the same SPIFFE ID and lifetime, written over
// the files and read by the TLS source. It returns the new certificate.
func (r *certificateRenewer) renew() (*x509.Certificate, error) {
	before, err := readCertificate(r.source.files.CertFile)
	if err != nil {
		return nil, err
	}
	spiffeID := spiffeIDOf(before)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// The control plane copies neither subject nor extensions: it certifies the caller's own identity.
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"protomesh"}}}, key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), signCertificateTimeout)
	defer cancel()
	response, err := r.client.SignCertificate(ctx, &certificatev1.SignCertificateRequest{
		CsrPem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		Ttl:    durationpb.New(before.NotAfter.Sub(before.NotBefore).Truncate(time.Second)),
	})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := []byte(response.GetCertificatePem())
	// A pair that does not match, or another identity, must never reach the files.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("the signed certificate: %w", err)
	}
	renewed := pair.Leaf
	if got := spiffeIDOf(renewed); got != spiffeID {
		return nil, fmt.Errorf("the control plane signed %q, not %q", got, spiffeID)
	}
	if err := replaceFileContents(r.source.files.KeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := replaceFileContents(r.source.files.CertFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	if err := r.source.load(); err != nil {
		return nil, err
	}
	r.logger.Info("certificate renewed", "serialNumber", fmt.Sprintf("%X", renewed.SerialNumber), "notAfter", renewed.NotAfter.UTC().Format(time.RFC3339), "spiffeId", spiffeID)
	return renewed, nil
}

// readCertificate is the first certificate of a PEM file.
func readCertificate(file string) (*x509.Certificate, error) {
	contents, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for block, rest := pem.Decode(contents); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
	return nil, errors.New(file + " holds no PEM certificate")
}

// replaceFileContents writes contents beside file and renames it over file: a reader sees the
// old file or the new one, never half of one (mesh/identity.ts replaceFile).
func replaceFileContents(file string, contents []byte, mode os.FileMode) error {
	next, err := os.CreateTemp(filepath.Dir(file), filepath.Base(file)+".*.next")
	if err != nil {
		return err
	}
	defer os.Remove(next.Name())
	if _, err := next.Write(contents); err != nil {
		_ = next.Close()
		return err
	}
	if err := next.Chmod(mode); err != nil {
		_ = next.Close()
		return err
	}
	if err := next.Close(); err != nil {
		return err
	}
	return os.Rename(next.Name(), file)
}
