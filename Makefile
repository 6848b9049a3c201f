# Hearth — developer entry points. CARGO_TARGET_DIR lives outside the clone so CI and fresh clones reuse builds.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/hearth/target
HEARTH := $(CARGO_TARGET_DIR)/release/hearth
STATE ?= .hearth
PROMPT ?= Explain in two sentences why the sky is blue.

.PHONY: run test models build lint bench golden clean

## make run: fetch the demo model, build, import it and run a generation.
run: models build
	@$(HEARTH) --state-dir $(STATE) model list --json | grep -q '"name": "smollm2"' || \
	  $(HEARTH) --state-dir $(STATE) model import "$$(scripts/fetch-models)/SmolLM2-135M-Instruct-Q4_1.gguf" --name smollm2
	$(HEARTH) --state-dir $(STATE) run smollm2 "$(PROMPT)"

models:
	@scripts/fetch-models >/dev/null

build:
	cargo build --release -p hearth

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

## make test: everything CI runs.
test: models lint
	cargo test --workspace

## make bench: side by side with llama.cpp (builds it from PyPI's llama-cpp-python on first use).
bench:
	scripts/bench

## make golden: regenerate tests/golden/ from llama.cpp.
golden:
	scripts/make-golden

clean:
	rm -rf $(STATE)
