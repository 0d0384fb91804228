package protomesh_test

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

const testTrustDomain = "protomesh.local"

// A failed handshake must end the call well inside its deadline (issue 13: "fail fast").
const (
	tlsCallDeadline = 5 * time.Second
	failFastWithin  = 2 * time.Second
)

// testCA is a development mesh CA made with the openssl CLI, with the same commands as mesh/identity.ts.
type testCA struct {
	dir, certFile, keyFile string
}

func openssl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", args[0], err, out)
	}
}

func newTestCA(t *testing.T, trustDomain string) *testCA {
	t.Helper()
	dir := t.TempDir()
	ca := &testCA{dir: dir, certFile: filepath.Join(dir, "ca.crt"), keyFile: filepath.Join(dir, "ca.key")}
	openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ca.keyFile)
	openssl(t, "req", "-x509", "-new", "-sha256", "-key", ca.keyFile, "-out", ca.certFile, "-days", "1",
		"-subj", "/O=protomesh/CN=protomesh mesh CA "+trustDomain,
		"-addext", "basicConstraints=critical,CA:TRUE",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign",
		"-addext", "subjectAltName=URI:spiffe://"+trustDomain)
	return ca
}

// issue writes service a key and a certificate valid from notBefore for ttl as <stem>.key and
// <stem>.crt in the CA's directory, replaced by rename, key first (mesh/identity.ts issueWorkloadCertificate).
func (ca *testCA) issue(t *testing.T, service, stem string, notBefore time.Time, ttl time.Duration) protomesh.TLSFiles {
	t.Helper()
	return ca.issueNaming(t, service, "URI:"+protomesh.SPIFFEIDFor(testTrustDomain, service), stem, notBefore, ttl)
}

// issueNaming is issue with the certificate's subjectAltName given as openssl writes it
// ("DNS:anonymous" makes a certificate of the mesh CA that names no SPIFFE ID).
func (ca *testCA) issueNaming(t *testing.T, service, subjectAltName, stem string, notBefore time.Time, ttl time.Duration) protomesh.TLSFiles {
	t.Helper()
	work := t.TempDir()
	key, csr, cert, config := filepath.Join(work, "w.key"), filepath.Join(work, "w.csr"), filepath.Join(work, "w.crt"), filepath.Join(work, "ca.cnf")
	openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
	openssl(t, "req", "-new", "-key", key, "-out", csr, "-subj", "/O=protomesh/CN="+service)
	writeFile(t, filepath.Join(work, "index.txt"), "")
	writeFile(t, config, strings.Join([]string{
		"[ca]", "default_ca = mesh", "[mesh]", "dir = " + work, "database = $dir/index.txt", "serial = $dir/serial",
		"new_certs_dir = $dir", "certificate = " + ca.certFile, "private_key = " + ca.keyFile, "default_md = sha256",
		"policy = any", "unique_subject = no", "copy_extensions = none", "x509_extensions = svid",
		"[any]", "organizationName = optional", "commonName = optional",
		"[svid]", "basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature,keyAgreement",
		"extendedKeyUsage = serverAuth,clientAuth", "authorityKeyIdentifier = keyid",
		"subjectAltName = " + subjectAltName, "",
	}, "\n"))
	asn1 := func(at time.Time) string { return at.UTC().Format("060102150405") + "Z" }
	openssl(t, "ca", "-batch", "-notext", "-rand_serial", "-preserveDN", "-config", config, "-in", csr, "-out", cert,
		"-startdate", asn1(notBefore), "-enddate", asn1(notBefore.Add(ttl)))
	files := protomesh.TLSFiles{CAFile: ca.certFile, CertFile: filepath.Join(ca.dir, stem+".crt"), KeyFile: filepath.Join(ca.dir, stem+".key")}
	replaceFile(t, key, files.KeyFile)
	replaceFile(t, cert, files.CertFile)
	return files
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile copies from beside to and renames it over to: readers see the old file or the new one.
func replaceFile(t *testing.T, from, to string) {
	t.Helper()
	content, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to+".next", string(content))
	if err := os.Rename(to+".next", to); err != nil {
		t.Fatal(err)
	}
}

// identityService counts the calls that reach it and answers Echo with the caller's SPIFFE ID.
type identityService struct {
	interopv1.UnimplementedInteropServiceServer
	calls atomic.Int64
}

func (s *identityService) Echo(ctx context.Context, _ *interopv1.EchoRequest) (*interopv1.EchoResponse, error) {
	s.calls.Add(1)
	id, _ := protomesh.PeerIdentity(ctx)
	return &interopv1.EchoResponse{Language: "go", Endpoint: id}, nil
}

// startTLSServer starts a kit server of identityService on 127.0.0.1:0 (with WithTLS when files
// is not nil), drained at cleanup.
func startTLSServer(t *testing.T, name string, files *protomesh.TLSFiles) (*identityService, string) {
	t.Helper()
	options := []protomesh.ServerOption{protomesh.WithLogger(protomesh.NewLogger(io.Discard, name, "info")), protomesh.WithDrainGrace(time.Second)}
	if files != nil {
		options = append(options, protomesh.WithTLS(*files))
	}
	return serveIdentity(t, protomesh.NewServer(name, options...))
}

// serveIdentity registers an identityService on server and has it listen on 127.0.0.1:0, drained at cleanup.
func serveIdentity(t *testing.T, server *protomesh.Server) (*identityService, string) {
	t.Helper()
	service := &identityService{}
	interopv1.RegisterInteropServiceServer(server, service)
	return service, listenOnLoopback(t, server)
}

func dialTLS(t *testing.T, addr string, files protomesh.TLSFiles, service string) *grpc.ClientConn {
	t.Helper()
	conn, err := protomesh.Dial(addr, protomesh.DialTLS(files, service), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// assertFailsFast makes one call over conn and fails the test unless it fails within failFastWithin.
func assertFailsFast(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	_, err, took := echo(conn)
	if err == nil || took > failFastWithin {
		t.Fatalf("call: %v after %s, want an error within %s", err, took, failFastWithin)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
}

// echo makes one call and returns its error and how long it took.
func echo(conn *grpc.ClientConn, options ...grpc.CallOption) (*interopv1.EchoResponse, error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), tlsCallDeadline)
	defer cancel()
	startedAt := time.Now()
	response, err := interopv1.NewInteropServiceClient(conn).Echo(ctx, &interopv1.EchoRequest{}, options...)
	return response, err, time.Since(startedAt)
}

// serverSerial is the serial number of the certificate the server presented on the call p was
// given to (grpc.Peer).
func serverSerial(p *peer.Peer) string {
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
}

func TestTLSRightCAReachesTheHandlerWithTheCallersSPIFFEID(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	clientFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	service, addr := startTLSServer(t, "catalog", &serverFiles)
	response, err, _ := echo(dialTLS(t, addr, clientFiles, "catalog"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://protomesh.local/service/orders"; response.GetEndpoint() != want {
		t.Fatalf("the handler saw %q, want %q", response.GetEndpoint(), want)
	}
	if got := service.calls.Load(); got != 1 {
		t.Fatalf("handler calls %d, want 1", got)
	}
}

func TestTLSServerRefusesClientsWithoutACertificateFromItsCAFast(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	service, addr := startTLSServer(t, "catalog", &serverFiles)
	otherCA := newTestCA(t, testTrustDomain)
	wrongCA := otherCA.issue(t, "orders", "orders", time.Now(), time.Hour)
	// The client trusts the server's CA, so that only its own certificate is wrong.
	wrongCA.CAFile = ca.certFile
	expired := ca.issue(t, "orders", "orders-expired", time.Now().Add(-2*time.Hour), time.Hour)
	noCertificate := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	for _, tc := range []struct {
		name string
		conn func(t *testing.T) *grpc.ClientConn
	}{
		{"a certificate from another CA", func(t *testing.T) *grpc.ClientConn { return dialTLS(t, addr, wrongCA, "catalog") }},
		{"an expired certificate", func(t *testing.T) *grpc.ClientConn { return dialTLS(t, addr, expired, "catalog") }},
		{"no client certificate", func(t *testing.T) *grpc.ClientConn { return rawConn(t, addr, noCertificate) }},
		{"plaintext", func(t *testing.T) *grpc.ClientConn { return plainConn(t, addr) }},
	} {
		t.Run(tc.name, func(t *testing.T) { assertFailsFast(t, tc.conn(t)) })
	}
	if got := service.calls.Load(); got != 0 {
		t.Fatalf("handler calls %d, want 0", got)
	}
}

func rawConn(t *testing.T, addr string, transport credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(transport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestTLSClientRefusesAServerOfAnotherServiceAndAPlaintextServerFast(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	clientFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	inventoryFiles := ca.issue(t, "inventory", "inventory", time.Now(), time.Hour)
	impostor, impostorAddr := startTLSServer(t, "inventory", &inventoryFiles)
	plain, plainAddr := startTLSServer(t, "catalog", nil)
	// catalog's SPIFFE ID, from a CA the client does not trust: the chain is checked, not only the ID.
	foreignFiles := newTestCA(t, testTrustDomain).issue(t, "catalog", "catalog", time.Now(), time.Hour)
	foreign, foreignAddr := startTLSServer(t, "catalog", &foreignFiles)
	for _, tc := range []struct{ name, addr string }{
		{"a server certificate for another service", impostorAddr},
		{"a server certificate from another CA", foreignAddr},
		{"a plaintext server", plainAddr},
	} {
		t.Run(tc.name, func(t *testing.T) { assertFailsFast(t, dialTLS(t, tc.addr, clientFiles, "catalog")) })
	}
	if got := impostor.calls.Load() + plain.calls.Load() + foreign.calls.Load(); got != 0 {
		t.Fatalf("handler calls %d, want 0", got)
	}
}

func TestTLSRotatedServerFilesServeNewHandshakesWithoutAFailedCall(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	serverFiles.RefreshInterval = 100 * time.Millisecond
	clientFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	service, addr := startTLSServer(t, "catalog", &serverFiles)
	held := dialTLS(t, addr, clientFiles, "catalog")
	var p peer.Peer
	if _, err, _ := echo(held, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	oldSerial := serverSerial(&p)

	// Calls go on, over the held connection and over a new connection (a new handshake) each, while
	// the files are replaced: none may fail, and the new handshakes come to see the new certificate.
	var failures, calls atomic.Int64
	newSerial := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			conn, err := protomesh.Dial(addr, protomesh.DialTLS(clientFiles, "catalog"), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
			if err != nil {
				failures.Add(1)
				continue
			}
			var fresh peer.Peer
			_, err, _ = echo(conn, grpc.Peer(&fresh))
			_, heldErr, _ := echo(held)
			_ = conn.Close()
			calls.Add(2)
			if err != nil || heldErr != nil {
				failures.Add(1)
				t.Errorf("a call failed during the rotation: %v / %v", err, heldErr)
				continue
			}
			if serial := serverSerial(&fresh); serial != oldSerial {
				newSerial <- serial
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	<-done
	select {
	case serial := <-newSerial:
		t.Logf("a new handshake saw certificate %s after %d calls, %d failed", serial, calls.Load(), failures.Load())
	default:
		t.Fatalf("no new handshake saw the new certificate within 10s (%d calls)", calls.Load())
	}
	if failures.Load() != 0 {
		t.Fatalf("%d failed calls during the rotation, want 0", failures.Load())
	}
	if got := service.calls.Load(); got != calls.Load()+1 {
		t.Fatalf("handler calls %d, want %d", got, calls.Load()+1)
	}
}

func TestTLSServerKeepsItsLastGoodPairWhenTheFilesAreBroken(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	serverFiles.RefreshInterval = 50 * time.Millisecond
	clientFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	service, addr := startTLSServer(t, "catalog", &serverFiles)
	// A key that is not the certificate's, as for an instant mid-rotation.
	other := ca.issue(t, "catalog", "other", time.Now(), time.Hour)
	replaceFile(t, other.KeyFile, serverFiles.KeyFile)
	time.Sleep(100 * time.Millisecond)
	if _, err, _ := echo(dialTLS(t, addr, clientFiles, "catalog")); err != nil {
		t.Fatalf("with a mismatched key on disk: %v, want the last good pair served", err)
	}
	if err := os.Remove(serverFiles.CertFile); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err, _ := echo(dialTLS(t, addr, clientFiles, "catalog")); err != nil {
		t.Fatalf("with the certificate file gone: %v, want the last good pair served", err)
	}
	if got := service.calls.Load(); got != 2 {
		t.Fatalf("handler calls %d, want 2", got)
	}
}

func TestTLSFilesFromTheEnvironmentMakeServerAndClientMTLS(t *testing.T) {
	ca := newTestCA(t, testTrustDomain)
	serverFiles := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	clientFiles := ca.issue(t, "orders", "orders", time.Now(), time.Hour)
	settingsOf := func(files protomesh.TLSFiles) protomesh.Settings {
		env := map[string]string{"PROTOMESH_TLS_CA_FILE": files.CAFile, "PROTOMESH_TLS_CERT_FILE": files.CertFile, "PROTOMESH_TLS_KEY_FILE": files.KeyFile}
		settings, err := protomesh.LoadSettings(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		return settings
	}
	service, addr := serveIdentity(t, protomesh.NewServer("catalog", protomesh.WithSettings(settingsOf(serverFiles)),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info"))))
	// A mesh service name dialled through the fallback: the server must be catalog's workload.
	conn, err := protomesh.Dial("catalog", protomesh.DialSettings(settingsOf(clientFiles)), protomesh.DialFallback(addr),
		protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	response, err, _ := echo(conn)
	if err != nil || response.GetEndpoint() != "spiffe://protomesh.local/service/orders" {
		t.Fatalf("call: %v %v, want the handler to see orders' SPIFFE ID", response, err)
	}
	if _, err, _ := echo(plainConn(t, addr)); err == nil {
		t.Fatal("a plaintext call succeeded on the port made mTLS by the environment")
	}
	if got := service.calls.Load(); got != 1 {
		t.Fatalf("handler calls %d, want 1", got)
	}
}

// TestTLSWithCertificatesFromTheTypeScriptKit is the cross-language check of the certificates: a
// Go server and client whose CA and workload certificates mesh/identity.ts made.
func TestTLSWithCertificatesFromTheTypeScriptKit(t *testing.T) {
	root := protomeshtest.RepoRoot(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not on PATH: the TypeScript kit cannot make the certificates")
	}
	if _, err := os.Stat(filepath.Join(root, "dist", "mesh", "index.js")); err != nil {
		t.Skip("dist/mesh is not built (npm run build): the TypeScript kit cannot make the certificates")
	}
	dir := t.TempDir()
	script := `const m = require(process.argv[1]);
(async () => {
  const ca = await m.createMeshCa({ dir: process.argv[2], trustDomain: "protomesh.local" });
  await m.issueWorkloadCertificate(ca, { service: "catalog" });
  await m.issueWorkloadCertificate(ca, { service: "orders" });
})().catch((error) => { console.error(error); process.exit(1); });`
	if out, err := exec.Command("node", "-e", script, filepath.Join(root, "dist", "mesh"), dir).CombinedOutput(); err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	filesOf := func(service string) protomesh.TLSFiles {
		return protomesh.TLSFiles{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, service+".crt"), KeyFile: filepath.Join(dir, service+".key")}
	}
	serverFiles := filesOf("catalog")
	service, addr := startTLSServer(t, "catalog", &serverFiles)
	response, err, _ := echo(dialTLS(t, addr, filesOf("orders"), "catalog"))
	if err != nil || response.GetEndpoint() != "spiffe://protomesh.local/service/orders" {
		t.Fatalf("call: %v %v, want the handler to see orders' SPIFFE ID", response, err)
	}
	if got := service.calls.Load(); got != 1 {
		t.Fatalf("handler calls %d, want 1", got)
	}
}
