package protomesh

import (
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LoadAuthorizationPolicy reads a service's own policy from the mesh config file (the YAML file
// PROTOMESH_MESH_CONFIG names): services.<service>.authorization, validated by
// [ParseAuthorizationPolicy], or nil when the file gives none (mesh/authorization.ts
// loadAuthorizationPolicy). For a program's edge; it reads no other block (the control plane
// validates the whole file when it loads it). Errors name the field, e.g.
// `services.catalog.authorization.rules[0].action: must be allow or deny`.
func LoadAuthorizationPolicy(file, service string) (*AuthorizationPolicy, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var document any
	if err := yaml.Unmarshal(text, &document); err != nil {
		return nil, fieldError("(file)", "not valid YAML: "+strings.SplitN(err.Error(), "\n", 2)[0])
	}
	root, err := mappingAt(orEmpty(document), "(root)")
	if err != nil {
		return nil, err
	}
	services, err := mappingAt(orEmpty(root["services"]), "services")
	if err != nil {
		return nil, err
	}
	field := "services." + service
	own, err := mappingAt(orEmpty(services[service]), field)
	if err != nil {
		return nil, err
	}
	block := own["authorization"]
	if block == nil {
		return nil, nil
	}
	return ParseAuthorizationPolicy(block, field+".authorization")
}

// orEmpty is value, or an empty mapping for an absent one (a YAML null or an empty file).
func orEmpty(value any) any {
	if value == nil {
		return map[string]any{}
	}
	return value
}

// mayAuthorize reports whether the server can have a policy to enforce (authorizationOf), so that
// NewServer adds the authorization interceptors.
func (o *serverOptions) mayAuthorize() bool {
	return o.authorization != nil || (o.meshConfig != "" && o.tls != nil)
}

// authorizationOf is the policy a server enforces: WithAuthorization's, else, with TLS and a mesh
// config file, its mesh service's block there; nil for none.
func (s *Server) authorizationOf() (*AuthorizationPolicy, error) {
	if s.options.authorization != nil {
		return s.options.authorization, nil
	}
	if !s.options.mayAuthorize() {
		return nil, nil
	}
	policy, err := LoadAuthorizationPolicy(s.options.meshConfig, s.options.meshService)
	if err != nil {
		return nil, fmt.Errorf("%s: the mesh config %s: %w", s.name, s.options.meshConfig, err)
	}
	return policy, nil
}
