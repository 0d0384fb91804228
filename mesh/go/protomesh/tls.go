package protomesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Opt-in STRICT mTLS (issue 13), the Go side of mesh/tls.ts: a server accepts only clients whose
// certificate chains to the mesh CA; a client presents its certificate and accepts only a server
// whose certificate chains to the CA and names the SPIFFE ID of the service it dials. Host names
// are not checked: endpoints are addresses, and the identity is the SPIFFE ID (X509-SVID spec).

// ControlPlaneService is the mesh service name of the control plane's identity: over mTLS its
// certificate names spiffe://<trust-domain>/service/control-plane, which the kit's registry lease
// and certificate renewal require (mesh/names.ts CONTROL_PLANE_SERVICE); the xDS client checks the
// host it dials instead ([XDSBootstrap]).
const ControlPlaneService = "control-plane"

// serverTLSCredentials are the transport credentials of a TLS server port. Each handshake takes
// the source's current pair and CA, so that replaced files serve new handshakes.
func serverTLSCredentials(source *tlsSource) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			material, err := source.current()
			if err != nil {
				return nil, err
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{material.certificate},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    material.roots,
				// The config returned here replaces the base one, h2 included (gRPC requires ALPN h2).
				NextProtos: []string{"h2"},
			}, nil
		},
	})
}

// clientTLSCredentials are the transport credentials of a TLS client: its certificate for the
// server to check, and a check of the server's that verifies the chain to the CA itself
// (InsecureSkipVerify only skips crypto/tls's host-name check, which does not apply) and then the
// SPIFFE ID: the service's when service is given, else any workload of the trust domain, as mesh/tls.ts.
func clientTLSCredentials(source *tlsSource, service string) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			material, err := source.current()
			if err != nil {
				return nil, err
			}
			return &material.certificate, nil
		},
		VerifyConnection: func(state tls.ConnectionState) error {
			material, err := source.current()
			if err != nil {
				return err
			}
			return verifyServer(state, material, service)
		},
	})
}

func verifyServer(state tls.ConnectionState, material *tlsMaterial, service string) error {
	if len(state.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	leaf := state.PeerCertificates[0]
	intermediates := x509.NewCertPool()
	for _, certificate := range state.PeerCertificates[1:] {
		intermediates.AddCert(certificate)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         material.roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("tls: the server's certificate: %w", err)
	}
	actual := spiffeIDOf(leaf)
	if actual == "" {
		return errors.New("tls: the server's certificate carries no SPIFFE ID")
	}
	if service != "" {
		if want := SPIFFEIDFor(material.trustDomain, service); actual != want {
			return fmt.Errorf("tls: the server is %s, not %s", actual, want)
		}
	} else if trustDomainOf(actual) != material.trustDomain {
		return fmt.Errorf("tls: the server is %s, not a workload of spiffe://%s", actual, material.trustDomain)
	}
	return nil
}

// PeerIdentity is the SPIFFE ID of the caller of the call whose ctx this is (a handler's ctx on a
// server with [WithTLS]): the one spiffe:// URI SAN of its verified certificate (mesh/tls.ts
// peerIdentity). ok is false over plaintext or for a certificate that names no SPIFFE ID.
func PeerIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", false
	}
	id := spiffeIDOf(info.State.PeerCertificates[0])
	return id, id != ""
}
