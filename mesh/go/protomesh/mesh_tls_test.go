package protomesh_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// tlsMesh is a control plane on mTLS with the CA key, so that it signs renewals, and its CA.
type tlsMesh struct {
	ca *testCA
	cp *protomeshtest.ControlPlane
}

// startTLSMesh starts the TypeScript control plane on mTLS (PROTOMESH_TLS_* and
// PROTOMESH_CA_KEY_FILE) with a certificate of its own as the contract has it: the SPIFFE ID
// spiffe://protomesh.local/service/control-plane and the names clients dial it by. The test's own
// registry client is an admin identity.
func startTLSMesh(t *testing.T) *tlsMesh {
	t.Helper()
	ca := newTestCA(t, testTrustDomain)
	own := ca.issueNaming(t, "control-plane",
		"URI:"+protomesh.SPIFFEIDFor(testTrustDomain, protomesh.ControlPlaneService)+",DNS:control-plane,DNS:localhost,IP:127.0.0.1",
		"control-plane", time.Now(), time.Hour)
	admin := ca.issueNaming(t, "ops", "URI:spiffe://"+testTrustDomain+"/admin/ops", "ops", time.Now(), time.Hour)
	cp := protomeshtest.StartControlPlane(t, testMesh,
		protomeshtest.WithEnv(protomesh.EnvTLSCAFile+"="+own.CAFile, protomesh.EnvTLSCertFile+"="+own.CertFile,
			protomesh.EnvTLSKeyFile+"="+own.KeyFile, "PROTOMESH_CA_KEY_FILE="+ca.keyFile),
		protomeshtest.WithClientTLS(admin.CAFile, admin.CertFile, admin.KeyFile))
	return &tlsMesh{ca: ca, cp: cp}
}

func (m *tlsMesh) healthy(t *testing.T, service, addr string) func() bool {
	return func() bool { return m.cp.Endpoints(t, service)[addr] == "HEALTH_STATE_HEALTHY" }
}

// dialByName dials xds:///<service> through the control plane over mTLS with files.
func (m *tlsMesh) dialByName(t *testing.T, service string, files protomesh.TLSFiles) *grpc.ClientConn {
	t.Helper()
	conn, err := protomesh.Dial(service, protomesh.DialControlPlane(m.cp.Addr), protomesh.DialTLS(files, ""),
		protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestTLSServerRegistersOverMTLSTurnsHealthyAndIsDialledByName(t *testing.T) {
	mesh := startTLSMesh(t)
	serverFiles := mesh.ca.issue(t, "kit-tls", "kit-tls", time.Now(), time.Hour)
	service, addr := serveIdentity(t, protomesh.NewServer("kit-tls", protomesh.WithTLS(serverFiles), protomesh.WithControlPlane(mesh.cp.Addr),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "kit-tls", "info")), protomesh.WithDrainGrace(time.Second)))
	// HEALTHY: the prober's health checks passed over mTLS, which requires kit-tls' SPIFFE ID.
	protomeshtest.Eventually(t, 8*time.Second, "registered over mTLS and HEALTHY", mesh.healthy(t, "kit-tls", addr))

	conn := mesh.dialByName(t, "kit-tls", mesh.ca.issue(t, "orders", "orders", time.Now(), time.Hour))
	if target := conn.Target(); target != "xds:///kit-tls" {
		t.Fatalf("target %q, want xds:///kit-tls", target)
	}
	var p peer.Peer
	var response interface{ GetEndpoint() string }
	protomeshtest.Eventually(t, 8*time.Second, "a call by name over mTLS", func() bool {
		r, err, _ := echo(conn, grpc.Peer(&p))
		response = r
		return err == nil
	})
	if want := protomesh.SPIFFEIDFor(testTrustDomain, "orders"); response.GetEndpoint() != want {
		t.Fatalf("the handler saw %q, want %q", response.GetEndpoint(), want)
	}
	if got := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].URIs[0].String(); got != protomesh.SPIFFEIDFor(testTrustDomain, "kit-tls") {
		t.Fatalf("the client reached %s, want kit-tls' SPIFFE ID", got)
	}
	if service.calls.Load() == 0 {
		t.Fatal("no call reached the handler")
	}
}

func TestTLSRegistrationUnderAnotherServicesNameIsRefused(t *testing.T) {
	mesh := startTLSMesh(t)
	// orders' certificate, registering as kit-tls.
	files := mesh.ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	logs := &syncBuffer{}
	server := protomesh.NewServer("kit-tls", protomesh.WithTLS(files), protomesh.WithControlPlane(mesh.cp.Addr),
		protomesh.WithLogger(protomesh.NewLogger(logs, "kit-tls", "info")), protomesh.WithDrainGrace(time.Second))
	_, addr := serveIdentity(t, server)
	protomeshtest.Eventually(t, 5*time.Second, "the registration refused", func() bool {
		return len(logs.lines(t, "registration failed; retrying with backoff")) > 0
	})
	line := logs.lines(t, "registration failed; retrying with backoff")[0]
	if line["code"] != "PERMISSION_DENIED" || !strings.Contains(line["details"].(string), "spiffe://protomesh.local/service/orders may not register an endpoint of kit-tls") {
		t.Fatalf("the refusal logged %v, want PERMISSION_DENIED naming orders and kit-tls", line)
	}
	if server.IsRegistered() {
		t.Fatal("the server counts itself registered")
	}
	if endpoints := mesh.cp.Endpoints(t, "kit-tls"); len(endpoints) != 0 {
		t.Fatalf("the registry lists %v for kit-tls, want nothing (the server is %s)", endpoints, addr)
	}
}

func TestTLSCertificateIsRenewedAtHalfLifeWithoutAFailedCall(t *testing.T) {
	mesh := startTLSMesh(t)
	const lifetime = 6 * time.Second
	serverFiles := mesh.ca.issue(t, "kit-tls", "kit-tls", time.Now(), lifetime)
	first, err := readCertificateFile(serverFiles.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	service, addr := serveIdentity(t, protomesh.NewServer("kit-tls", protomesh.WithTLS(serverFiles), protomesh.WithControlPlane(mesh.cp.Addr),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "kit-tls", "info")), protomesh.WithDrainGrace(time.Second)))
	protomeshtest.Eventually(t, 5*time.Second, "registered over mTLS and HEALTHY", mesh.healthy(t, "kit-tls", addr))
	clientFiles := mesh.ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	byName := mesh.dialByName(t, "kit-tls", clientFiles)
	protomeshtest.Eventually(t, 5*time.Second, "a call by name", func() bool { _, err, _ := echo(byName); return err == nil })

	// Calls by name over the held channel, and over a new connection (a new handshake) each, until
	// a second past the first certificate's end: none may fail, and the new handshakes come to see
	// a renewed certificate.
	var calls, failures atomic.Int64
	serials := map[string]bool{}
	for time.Now().Before(first.NotAfter.Add(time.Second)) {
		_, err, _ := echo(byName)
		fresh := dialTLS(t, addr, clientFiles, "kit-tls")
		var p peer.Peer
		_, freshErr, _ := echo(fresh, grpc.Peer(&p))
		_ = fresh.Close()
		calls.Add(2)
		if err != nil || freshErr != nil {
			failures.Add(1)
			t.Errorf("a call failed across the renewal: %v / %v", err, freshErr)
			continue
		}
		serials[serverSerial(&p)] = true
		time.Sleep(100 * time.Millisecond)
	}
	renewed, err := readCertificateFile(serverFiles.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d calls, %d failed; the server presented %d certificates; the one on disk ends %s",
		calls.Load(), failures.Load(), len(serials), renewed.NotAfter.Format(time.RFC3339))
	if failures.Load() != 0 {
		t.Fatalf("%d failed calls across the renewal, want 0", failures.Load())
	}
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || !renewed.NotAfter.After(first.NotAfter) {
		t.Fatalf("the certificate on disk is still serial %s, ending %s", renewed.SerialNumber, renewed.NotAfter)
	}
	if len(renewed.URIs) != 1 || renewed.URIs[0].String() != protomesh.SPIFFEIDFor(testTrustDomain, "kit-tls") {
		t.Fatalf("the renewed certificate names %v, want kit-tls' SPIFFE ID", renewed.URIs)
	}
	delete(serials, first.SerialNumber.String())
	if len(serials) == 0 {
		t.Fatalf("new handshakes saw only the first certificate, serial %s, want a renewed one", first.SerialNumber)
	}
	if got := service.calls.Load(); got != calls.Load()+1 {
		t.Fatalf("handler calls %d, want %d", got, calls.Load()+1)
	}
	if !mesh.healthy(t, "kit-tls", addr)() {
		t.Fatalf("after the renewal: %v, want %s HEALTHY", mesh.cp.Endpoints(t, "kit-tls"), addr)
	}
}

// readCertificateFile is the certificate of a PEM file.
func readCertificateFile(file string) (*x509.Certificate, error) {
	contents, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(contents)
	if block == nil {
		return nil, errors.New(file + " holds no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func TestXDSBootstrapWithTLSNamesTheWorkloadsFilesAsA65TLSCredentials(t *testing.T) {
	files := protomesh.TLSFiles{CAFile: "/run/mesh/ca.crt", CertFile: "/run/mesh/orders.crt", KeyFile: "/run/mesh/orders.key", RefreshInterval: 1500 * time.Millisecond}
	var bootstrap struct {
		XDSServers []struct {
			ServerURI    string           `json:"server_uri"`
			ChannelCreds []map[string]any `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal(protomesh.XDSBootstrap("127.0.0.1:50050", "zone-a", &files), &bootstrap); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "tls", "config": map[string]any{
		"ca_certificate_file": files.CAFile, "certificate_file": files.CertFile, "private_key_file": files.KeyFile, "refresh_interval": "1.5s",
	}}
	if len(bootstrap.XDSServers) != 1 || bootstrap.XDSServers[0].ServerURI != "127.0.0.1:50050" || !reflect.DeepEqual(bootstrap.XDSServers[0].ChannelCreds, []map[string]any{want}) {
		t.Fatalf("xds_servers %+v, want one at 127.0.0.1:50050 with %v", bootstrap.XDSServers, want)
	}
	if plain := string(protomesh.XDSBootstrap("127.0.0.1:50050", "", nil)); !strings.Contains(plain, `"channel_creds":[{"type":"insecure"}]`) {
		t.Fatalf("without TLS: %s, want insecure channel credentials", plain)
	}
}
