package protomesh

import (
	"strings"
	"testing"
)

func TestLoadSettingsRefusesBadValuesNamingTheVariable(t *testing.T) {
	for _, tc := range []struct{ variable, value string }{
		{EnvPort, "http"},
		{EnvPort, "70000"},
		{EnvControlPlane, "nohost"},
		{EnvControlPlane, "127.0.0.1:0"},
		{EnvZone, "Zone A"},
		{EnvAdvertiseHost, "example.com"},
		{EnvLogLevel, "loud"},
		{EnvAdminAddress, "9464"},
		{EnvAdminAddress, ":9464"},
		{EnvAdminAddress, "127.0.0.1:70000"},
		{EnvAdminAddress, "http://127.0.0.1:9464"},
		{EnvHealthAddress, "8086"},
		{EnvHealthAddress, ":8086"},
		{EnvHealthAddress, "127.0.0.1:70000"},
		{EnvHealthAddress, "grpc://127.0.0.1:8086"},
	} {
		env := map[string]string{tc.variable: tc.value}
		_, err := LoadSettings(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
		if err == nil || !strings.HasPrefix(err.Error(), tc.variable+": ") {
			t.Errorf("%s=%q: got %v, want an error naming %s", tc.variable, tc.value, err, tc.variable)
		}
	}
}

func TestLoadSettingsTakesPinosLevels(t *testing.T) {
	for _, level := range []string{"silent", "fatal", "error", "warn", "info", "debug", "trace"} {
		s, err := LoadSettings(func(name string) (string, bool) {
			if name == EnvLogLevel {
				return level, true
			}
			return "", false
		})
		if err != nil || s.LogLevel != level {
			t.Errorf("%s=%s: %+v %v", EnvLogLevel, level, s, err)
		}
	}
}

func TestLoadSettingsReadsEveryVariable(t *testing.T) {
	env := map[string]string{EnvControlPlane: "127.0.0.1:50050", EnvZone: "zone-a", EnvAdvertiseHost: "10.0.0.7", EnvLogLevel: "debug", EnvAdminAddress: "0.0.0.0:9464", EnvMeshConfig: "deploy/mesh.yaml", EnvHealthAddress: "0.0.0.0:8086", EnvHost: "0.0.0.0", EnvPort: "0"}
	s, err := LoadSettings(func(name string) (string, bool) { v, ok := env[name]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{ControlPlane: "127.0.0.1:50050", Zone: "zone-a", AdvertiseHost: "10.0.0.7", LogLevel: "debug", AdminAddress: "0.0.0.0:9464", MeshConfig: "deploy/mesh.yaml", HealthAddress: "0.0.0.0:8086", Host: "0.0.0.0", Port: 0}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	empty, _ := LoadSettings(func(string) (string, bool) { return "", false })
	if empty.ListenAddress(50053) != "127.0.0.1:50053" {
		t.Fatalf("default listen address %q", empty.ListenAddress(50053))
	}
	if empty.AdminAddress != "" {
		t.Fatalf("admin address %q when %s is unset, want none", empty.AdminAddress, EnvAdminAddress)
	}
	if empty.HealthAddress != "" {
		t.Fatalf("health address %q when %s is unset, want none", empty.HealthAddress, EnvHealthAddress)
	}
}

func TestLoadSettingsTakesAnAdminAddressOnAnyPort(t *testing.T) {
	for _, address := range []string{"127.0.0.1:0", "[::1]:9464", "localhost:9464"} {
		s, err := LoadSettings(func(name string) (string, bool) {
			if name == EnvAdminAddress {
				return address, true
			}
			return "", false
		})
		if err != nil || s.AdminAddress != address {
			t.Errorf("%s=%s: %+v %v", EnvAdminAddress, address, s, err)
		}
	}
}

func TestBackoffGrowsJitteredUpToItsCap(t *testing.T) {
	b := ConnectionBackoff(3e9, func() float64 { return 0.5 })
	var waits []int64
	for range 5 {
		waits = append(waits, b.Next().Milliseconds())
	}
	want := []int64{1000, 1600, 2560, 3000, 3000}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
	low := ConnectionBackoff(3e9, func() float64 { return 0 })
	if got := low.Next().Milliseconds(); got != 800 {
		t.Fatalf("first wait with random 0: %d ms, want 800 (the first wait is jittered too)", got)
	}
}

func TestLoadSettingsTakesTheTLSFilesAllThreeOrNone(t *testing.T) {
	env := map[string]string{EnvTLSCAFile: "ca.crt", EnvTLSCertFile: "catalog.crt", EnvTLSKeyFile: "catalog.key"}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	s, err := LoadSettings(lookup)
	if err != nil || s.TLS == nil || *s.TLS != (TLSFiles{CAFile: "ca.crt", CertFile: "catalog.crt", KeyFile: "catalog.key"}) {
		t.Fatalf("LoadSettings: %+v %v, want the three files", s.TLS, err)
	}
	delete(env, EnvTLSKeyFile)
	if _, err := LoadSettings(lookup); err == nil || !strings.Contains(err.Error(), "must be set together") {
		t.Fatalf("LoadSettings without %s: %v, want an error naming the variables", EnvTLSKeyFile, err)
	}
	if s, err := LoadSettings(func(string) (string, bool) { return "", false }); err != nil || s.TLS != nil {
		t.Fatalf("LoadSettings with none: %+v %v, want plaintext", s.TLS, err)
	}
}
