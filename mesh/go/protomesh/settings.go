package protomesh

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The environment variables a protomesh program reads (mesh/settings.ts SETTINGS_ENV).
const (
	EnvControlPlane  = "PROTOMESH_CONTROL_PLANE"
	EnvZone          = "PROTOMESH_ZONE"
	EnvAdvertiseHost = "PROTOMESH_ADVERTISE_HOST"
	EnvLogLevel      = "PROTOMESH_LOG_LEVEL"
	EnvAdminAddress  = "PROTOMESH_ADMIN_ADDRESS"
	EnvTLSCAFile     = "PROTOMESH_TLS_CA_FILE"
	EnvTLSCertFile   = "PROTOMESH_TLS_CERT_FILE"
	EnvTLSKeyFile    = "PROTOMESH_TLS_KEY_FILE"
	EnvMeshConfig    = "PROTOMESH_MESH_CONFIG"
	EnvHealthAddress = "PROTOMESH_HEALTH_ADDRESS"
	EnvHost          = "HOST"
	EnvPort          = "PORT"
)

// DefaultHost is the host a service binds when HOST is unset: loopback only.
const DefaultHost = "127.0.0.1"

// LogLevels are the values PROTOMESH_LOG_LEVEL takes.
// They are pino's, as in the TypeScript kit (mesh/settings.ts); silent logs nothing.
var LogLevels = []string{"silent", "fatal", "error", "warn", "info", "debug", "trace"}

// Settings are a program's settings, typed and validated.
type Settings struct {
	// ControlPlane is "host:port" (PROTOMESH_CONTROL_PLANE); set, servers register and clients dial
	// services by name over xDS.
	ControlPlane string
	// Zone is this process's xDS locality (PROTOMESH_ZONE); "" is the default locality.
	Zone string
	// AdvertiseHost is the address a server registers instead of its bound host (PROTOMESH_ADVERTISE_HOST).
	AdvertiseHost string
	// LogLevel is one of LogLevels (PROTOMESH_LOG_LEVEL, default info).
	LogLevel string
	// AdminAddress is "host:port" of the admin HTTP port, GET /metrics (PROTOMESH_ADMIN_ADDRESS);
	// "" is none, and no metrics. Port 0 picks a free one.
	AdminAddress string
	// TLS are the mTLS files (PROTOMESH_TLS_CA_FILE, PROTOMESH_TLS_CERT_FILE, PROTOMESH_TLS_KEY_FILE:
	// all three or none); set, [WithSettings] and [DialSettings] make the server and clients mTLS.
	// nil is plaintext.
	TLS *TLSFiles
	// MeshConfig is the mesh config file (PROTOMESH_MESH_CONFIG); with TLS, [WithSettings] makes a
	// server enforce its service's authorization block there ([WithMeshConfig]). "" is none.
	MeshConfig string
	// HealthAddress is "host:port" of a plaintext port serving grpc.health.v1 alone
	// (PROTOMESH_HEALTH_ADDRESS), for probes that cannot do mTLS ([WithHealthAddress]); "" is none.
	// Port 0 picks a free one.
	HealthAddress string
	// Host to listen on (HOST, default 127.0.0.1).
	Host string
	// Port to listen on (PORT); -1 when unset, for the program's own default.
	Port int
}

var (
	hostPortPattern = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$`)
	// A DNS label, as mesh/names.ts ZONE_PATTERN; "" is the default zone.
	zonePattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$`)
)

// LoadSettings reads the PROTOMESH_* variables, HOST and PORT through lookup (os.LookupEnv when
// nil). An empty variable counts as unset. A value that cannot be used is refused with an error
// naming the variable, e.g. `PORT: must be an integer from 0 to 65535, got "http"`.
func LoadSettings(lookup func(string) (string, bool)) (Settings, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	value := func(name string) string {
		text, _ := lookup(name)
		return text
	}
	s := Settings{Host: DefaultHost, Port: -1, LogLevel: "info"}
	if cp := value(EnvControlPlane); cp != "" {
		if err := checkHostPort(EnvControlPlane, cp, 1, "127.0.0.1:50050"); err != nil {
			return Settings{}, err
		}
		s.ControlPlane = cp
	}
	s.Zone = value(EnvZone)
	if !zonePattern.MatchString(s.Zone) {
		return Settings{}, fmt.Errorf("%s: must be a DNS label (lowercase letters, digits and '-'), got %q", EnvZone, s.Zone)
	}
	if host := value(EnvAdvertiseHost); host != "" {
		if net.ParseIP(host) == nil {
			return Settings{}, fmt.Errorf("%s: must be an IPv4 or IPv6 address, got %q", EnvAdvertiseHost, host)
		}
		s.AdvertiseHost = host
	}
	if level := value(EnvLogLevel); level != "" {
		if !slices.Contains(LogLevels, level) {
			return Settings{}, fmt.Errorf("%s: must be one of %s, got %q", EnvLogLevel, strings.Join(LogLevels, ", "), level)
		}
		s.LogLevel = level
	}
	if admin := value(EnvAdminAddress); admin != "" {
		if err := checkHostPort(EnvAdminAddress, admin, 0, "127.0.0.1:9464"); err != nil {
			return Settings{}, err
		}
		s.AdminAddress = admin
	}
	files := TLSFiles{CAFile: value(EnvTLSCAFile), CertFile: value(EnvTLSCertFile), KeyFile: value(EnvTLSKeyFile)}
	if files != (TLSFiles{}) {
		if files.CAFile == "" || files.CertFile == "" || files.KeyFile == "" {
			return Settings{}, fmt.Errorf("%s, %s and %s: must be set together, got %q, %q and %q",
				EnvTLSCAFile, EnvTLSCertFile, EnvTLSKeyFile, files.CAFile, files.CertFile, files.KeyFile)
		}
		s.TLS = &files
	}
	s.MeshConfig = value(EnvMeshConfig)
	if address := value(EnvHealthAddress); address != "" {
		if err := checkHostPort(EnvHealthAddress, address, 0, "127.0.0.1:8086"); err != nil {
			return Settings{}, err
		}
		s.HealthAddress = address
	}
	if host := value(EnvHost); host != "" {
		s.Host = host
	}
	if port := value(EnvPort); port != "" {
		if !isPort(port, 0) {
			return Settings{}, fmt.Errorf("%s: must be an integer from 0 to 65535, got %q", EnvPort, port)
		}
		s.Port, _ = strconv.Atoi(port)
	}
	return s, nil
}

// checkHostPort refuses address unless it is host:port with a port of at least minPort, naming
// the variable it came from and showing example.
func checkHostPort(variable, address string, minPort int, example string) error {
	if m := hostPortPattern.FindStringSubmatch(address); m == nil || !isPort(m[3], minPort) {
		return fmt.Errorf("%s: must be host:port, e.g. %s, got %q", variable, example, address)
	}
	return nil
}

// ListenAddress is the address to bind: the settings' host and port, else defaultPort.
func (s Settings) ListenAddress(defaultPort int) string {
	port := s.Port
	if port < 0 {
		port = defaultPort
	}
	return net.JoinHostPort(s.Host, strconv.Itoa(port))
}

func isPort(text string, lowest int) bool {
	if len(text) == 0 || len(text) > 5 {
		return false
	}
	port, err := strconv.Atoi(text)
	return err == nil && port >= lowest && port <= 65535 && !strings.HasPrefix(text, "+")
}
