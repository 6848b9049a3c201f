# Hearth — developer entry points. CARGO_TARGET_DIR lives outside the clone so CI and fresh clones reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hearth/target
HEARTH := $(CARGO_TARGET_DIR)/release/hearth
STATE ?= .hearth

BIND ?= 127.0.0.1:8383

.PHONY: run check test test-aarch64 check-macos models clients tools ui e2e conformance fuzz soak screenshots build lint package package-test bench bench-gateway golden clean

## make run: fetch the demo model, build, and serve it (embedded SQLite in $(STATE)); prints URL, login and a key.
run: models ui build
	@scripts/run-demo $(HEARTH) $(STATE) $(BIND)

models:
	@scripts/fetch-models >/dev/null

clients:
	@scripts/client-env >/dev/null

tools:
	@scripts/test-tools >/dev/null

## make ui: the dashboard (admin-ui/dist, embedded by the next cargo build); skipped with a note without Node.js.
ui:
	@scripts/build-ui

## make e2e: the dashboard in Debian's chromium against the real daemon (the debug binary `cargo test` built).
e2e:
	HEARTH_BIN=$(CARGO_TARGET_DIR)/debug/hearth HEARTH_MODEL=$$(scripts/fetch-models)/SmolLM2-135M-Instruct-Q4_1.gguf \
		node admin-ui/tests/e2e.mjs

## make conformance: schemathesis against the served /openapi.json (bounded; part of make test).
conformance:
	cargo build -p hearth
	scripts/api-conformance

## make fuzz: every cargo-fuzz target for HEARTH_FUZZ_SECS seconds each (20 in make test; set more to hunt).
fuzz: models
	scripts/fuzz

## make soak: the overload/soak test for 10 minutes (make test runs it for 40 s); prints its figures.
soak: models
	HEARTH_SOAK_SECS=$${HEARTH_SOAK_SECS:-600} cargo test -p hearth --test soak -- --nocapture

## make screenshots: e2e, then copy its screenshots to docs/screenshots/.
screenshots:
	cargo build -p hearth
	UPDATE_SCREENSHOTS=1 $(MAKE) e2e

build:
	cargo build --release -p hearth

lint:
	cargo fmt --all -- --check
	@scripts/build-ui
	cd admin-ui && npm run --silent check
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p hearth-engine --features candle-peer --bench candle -- -D warnings

## make check: the fast inner loop — fmt, clippy, and the unit tests of every crate (kernels, engine, daemon).
## Needs no PostgreSQL, root, browser, Node.js or network; a few minutes with a warm build.
check:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo test --workspace --lib

## make test: everything CI runs. Needs PostgreSQL on 127.0.0.1:5432 (the store tests fail without it; one test
## restarts it with pg_ctlcluster, in a test binary of its own), and root
## for the package tests (debootstrap, chroot).
test: models clients tools lint
	HEARTH_REQUIRE_UI=1 scripts/build-ui
	cargo test --workspace
	scripts/api-conformance
	scripts/fuzz
	scripts/test-aarch64
	scripts/check-macos
	$(MAKE) e2e
	tests/package/run

## make package: target/packages/hearth_VERSION-1_amd64.deb and hearth-VERSION-1.x86_64.rpm (docs/install.md).
package:
	scripts/package

## make package-test: lintian, rpmlint, systemd-analyze, and install/upgrade/purge in a Debian chroot.
package-test:
	tests/package/run

## make test-aarch64: the AArch64 NEON kernels cross-built and run under QEMU (part of make test).
test-aarch64:
	scripts/test-aarch64

## make check-macos: the macOS build with `--features metal` type-checked and linted (part of make test).
check-macos:
	scripts/check-macos

## make bench: side by side with llama.cpp (builds it from PyPI's llama-cpp-python on first use).
bench:
	scripts/bench

## make bench-gateway: HTTP gateway overhead (requests/s and auth latency) with a load generator.
bench-gateway:
	cargo build --release -p hearth
	scripts/bench-gateway $(HEARTH)

## make golden: regenerate tests/golden/ from llama.cpp.
golden:
	scripts/make-golden

clean:
	rm -rf $(STATE)
