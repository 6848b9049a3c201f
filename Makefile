# Hearth — developer entry points. CARGO_TARGET_DIR lives outside the clone so CI and fresh clones reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hearth/target
HEARTH := $(CARGO_TARGET_DIR)/release/hearth
STATE ?= .hearth

BIND ?= 127.0.0.1:8383

.PHONY: run test models clients tools build lint package package-test bench bench-gateway golden clean

## make run: fetch the demo model, build, and serve it (embedded SQLite in $(STATE)); prints URL, login and a key.
run: models build
	@scripts/run-demo $(HEARTH) $(STATE) $(BIND)

models:
	@scripts/fetch-models >/dev/null

clients:
	@scripts/client-env >/dev/null

tools:
	@scripts/test-tools >/dev/null

build:
	cargo build --release -p hearth

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## make test: everything CI runs. Needs PostgreSQL on 127.0.0.1:5432 (the store tests fail without it), and root
## for the package tests (debootstrap, chroot).
test: models clients tools lint
	cargo test --workspace
	tests/package/run

## make package: target/packages/hearth_VERSION-1_amd64.deb and hearth-VERSION-1.x86_64.rpm (docs/install.md).
package:
	scripts/package

## make package-test: lintian, rpmlint, systemd-analyze, and install/upgrade/purge in a Debian chroot.
package-test:
	tests/package/run

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
