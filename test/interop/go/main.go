// Command interop is the Go side of protomesh's cross-language interop tests: `interop serve`
// serves protomesh.interop.v1.InteropService through the Go kit, `interop call` calls any method of
// the mesh's services by name and prints one JSON line per call (the contract in
// proto/protomesh/interop/v1/interop.proto and the kits' contract).
package main

import (
	"fmt"
	"os"
)

// language is what this program reports as its language in Echo and Hold.
const language = "go"

func main() {
	if len(os.Args) < 2 {
		usage("a command: serve or call")
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve()
	case "call":
		err = call(os.Args[2:])
	default:
		usage(fmt.Sprintf("a command: serve or call, got %q", os.Args[1]))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}

// usage reports a usage error and exits with code 2.
func usage(problem string) {
	fmt.Fprintln(os.Stderr, "interop: needs "+problem)
	fmt.Fprintln(os.Stderr, "usage: interop serve | interop call --target <service> --method </pkg.Service/Method> --request '<json>' [--deadline-ms N] [--cancel-after-ms N] [--metadata k=v]... [--request-id ID] [--count N] [--unknown-field]")
	os.Exit(2)
}
