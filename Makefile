# lightmon: `make setup` once, then `make test`, `make bench`, `sudo ./lightmon`.
SHELL := /bin/bash
DENO := node_modules/deno/deno
DENO_RUN := $(DENO) run --quiet --allow-all
BUILD := build
APT_PACKAGES := clang llvm libbpf1 libbpf-dev bpftool libc6-dev iptables iproute2 busybox-static docker.io systemd \
	qemu-system-x86 dnsmasq-base man-db openssl graphviz containernetworking-plugins containerd

.PHONY: setup deps bpf helpers dist test check unit e2e bench vmtest clean

# Everything from nothing; harmless to run again.
setup: deps bpf helpers

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	npm ci --no-audit --no-fund --loglevel=error
	@$(DENO) --version | head -n1

bpf: $(BUILD)/lightmon.bpf.o

$(BUILD)/lightmon.bpf.o: bpf/lightmon.bpf.c bpf/lightmon.h bpf/vmlinux_min.h scripts/build_bpf.ts
	$(DENO_RUN) scripts/build_bpf.ts $(BUILD)

helpers: $(BUILD)/connector

$(BUILD)/connector: tests/helpers/connector.c
	@mkdir -p $(BUILD)
	clang -O2 -static -Wall -Werror -o $@ $<

# One executable file: deno compile where its runtime can be had, else a self-extracting file.
dist: dist/lightmon

dist/lightmon: $(BUILD)/lightmon.bpf.o $(wildcard src/*.ts src/*/*.ts ffi/*.ts) scripts/build_dist.ts scripts/dist_stub.sh
	$(DENO_RUN) scripts/build_dist.ts

check:
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check src/ ffi/ tests/ scripts/ bench/

unit:
	$(DENO) test --allow-all --quiet src/ ffi/

e2e: bpf helpers dist
	$(DENO) test --allow-all --quiet tests/

# What CI runs: static checks, unit tests, then end-to-end tests on the real kernel.
test: check bpf helpers dist
	$(DENO) test --allow-all src/ ffi/ tests/

# The capture-strategy matrix on Debian 12's Linux 6.1 under qemu, and on this kernel.
vmtest: bpf helpers dist
	$(DENO_RUN) scripts/vmtest.ts

bench: bpf helpers
	$(DENO_RUN) bench/peers.ts
	$(DENO_RUN) bench/connect_storm.ts
	$(DENO_RUN) bench/baseline.ts
	$(DENO_RUN) bench/kernel.ts

clean:
	rm -rf $(BUILD) dist
