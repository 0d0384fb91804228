package protomesh

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/admin"
)

// ChannelzServiceName is grpc.channelz.v1: the channels, subchannels, servers and sockets of the
// process (gRFC A14).
const ChannelzServiceName = "grpc.channelz.v1.Channelz"

// CSDSServiceName is envoy.service.status.v3 CSDS: the xDS clients' resources as they hold them
// (gRFC A40).
const CSDSServiceName = "envoy.service.status.v3.ClientStatusDiscoveryService"

// registerAdminServices registers grpc-go's admin services on server (mesh/admin-services.ts) and
// returns the names of those registered, and the cleanup to call once server has stopped.
// Channelz is grpc-go's own (always on); CSDS is added by google.golang.org/grpc/xds as it is
// linked, which this package is for dialling over xDS (xds_bootstrap.go), so a kit server serves
// both. They are what grpcdebug reads of a process's channels and xDS config, and reflection
// describes them (their Go code registers its descriptors), so grpcurl needs no proto files.
//
// CSDS reports the clients of grpc-go's default xDS client pool, the one the process's own
// GRPC_XDS_BOOTSTRAP(_CONFIG) configures: the channels Dial makes to the control plane that bootstrap
// names are among them; those to another control plane, or from a process started without a
// bootstrap, use a pool per bootstrap and are not (xdsResolverFor).
func registerAdminServices(server *grpc.Server) ([]string, func(), error) {
	cleanup, err := admin.Register(server)
	if err != nil {
		return nil, nil, fmt.Errorf("admin services: %w", err)
	}
	registered := server.GetServiceInfo()
	var names []string
	for _, name := range []string{ChannelzServiceName, CSDSServiceName} {
		if _, ok := registered[name]; ok {
			names = append(names, name)
		}
	}
	return names, cleanup, nil
}
