# Benchmarks (not tests): they print figures and never fail on speed. Included by the Makefile.
#   make bench         the full suite (~18 min on 2 cores): table on stdout, JSON in bench/results/
#   make bench-smoke   every built scenario once, tiny: proves the harness works (~40 s)
#   make bench BENCH_ARGS="B1 B2 --pairs 7"   pick scenarios / pairs; see `node dist/bench/run.js --help`
#   make bench-b9      control-plane scale (issue 11, B9; ~4 min on 2 cores), on its own: not in bench or bench-smoke
#   make bench-b10     registration storm (issue 11, B10; control-plane restarts under 1,000 leases), on its own too

# ghz (grpc-go load tester), pinned: the suite's gRPC-aware check of every server under test.
GHZ_VERSION := v0.120.0
BENCH_ARGS ?=
# B9's own flags, e.g. B9_ARGS="--sizes 100x10:100+100 --changes 40"; see bench/b9-control-plane-scale.ts.
B9_ARGS ?=
# B10's own flags, e.g. B10_ARGS="--endpoints 200 --services 4 --repeats 1 --cases SIGKILL"; see bench/b10-registration-storm.ts.
B10_ARGS ?=

.PHONY: bench bench-smoke bench-tools bench-h2load bench-b9 bench-b10 bench-mtls

# h2load comes from Debian's nghttp2-client (the Makefile's apt-install).
bench-h2load:
	$(call apt-install,command -v h2load,nghttp2-client,the benchmark smoke tests)

$(TOOLS_BIN)/ghz:
	$(call go-install,github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION))

bench-tools: bench-h2load $(TOOLS_BIN)/ghz ## install the benchmark tools: h2load (nghttp2-client) and ghz

bench: build bench-tools ## run the benchmark suite and print the table (results in bench/results/)
	node dist/bench/run.js $(BENCH_ARGS)

bench-smoke: build bench-tools ## run every built scenario once in a tiny mode (harness check, not figures)
	node dist/bench/run.js --smoke $(BENCH_ARGS)

# The control plane (this process) on core 0; subscribers and the endpoints' health server on core 1 (a harness
# confined to core 0 still pins its children: pinned-process.ts counts the machine's cores).
bench-b9: build ## B9: control-plane scale, one endpoint change to K xDS subscribers at 10 to 2,000 endpoints (a table)
	$(if $(shell command -v taskset),taskset -c 0 )node dist/bench/b9-control-plane-scale.js $(B9_ARGS)

# B10 pins its own processes: the control plane on core 0, replicas, subscribers and the caller on core 1.
bench-b10: build ## B10: registration storm, the control plane restarted under 1,000 leases (time until the mesh is whole, flapping, losses)
	node dist/bench/b10-registration-storm.js $(B10_ARGS)

bench-mtls: build bench-tools ## B1T and B2T: B1 and B2 under mTLS against plain grpc-js with the same certificates, and each side in plaintext
	node dist/bench/run.js B1T B2T $(BENCH_ARGS)
