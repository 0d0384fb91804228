# The Go kit (mesh/go), the Go services and programs (services/inventory, test/interop/go).
