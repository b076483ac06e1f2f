# Flint — build, test and demo. Everything the product needs comes from Debian packages and the Swift toolchain;
# Python is only for Tools/ (fixture and peer scripts), never for building or testing.

SWIFT        ?= swift
APT_PACKAGES := libsentencepiece-dev libhdf5-dev libzstd-dev pkg-config \
                gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
RELEASE_BIN   = $(shell $(SWIFT) build -c release --show-bin-path)/flint
DEMO_DIR     := Tests/Fixtures/models/demo
DEMO_OUT     := out/demo

.PHONY: all deps loadtest-deps loadtest build release install uninstall library-check docs test kernel-test kernel-test-arm demo clean fixtures peers fuzz fuzz-build fuzz-corpus fuzz-smoke

all: build

# Installs the system libraries that are missing (apt, as root or through sudo).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product flint

# The whole test suite (what .ci/run runs): the C kernel tests of every instruction-set path (this CPU's, and
# ARM64 NEON under qemu), then the Swift tests.
test: deps kernel-test kernel-test-arm
	$(SWIFT) test
	$(MAKE) fuzz-smoke

# libFuzzer harnesses (Fuzz/): every parser and model construction from a .flint, built with
# -sanitize=fuzzer,address into .build-fuzz. `make fuzz` runs each target FUZZ_SECONDS (default 300) from a
# corpus in .build-fuzz/corpus/<target> seeded from Tests/Fixtures; crashes land in .build-fuzz/crashes/.
# Leak detection is off: the signal-safe tables of temporary and mapped file names leak their strings by design
# (a signal handler may be reading them). A crash input replays without the fuzzer: swift build --product fuzz-<target> && .build/debug/fuzz-<target> FILE
FUZZ_TARGETS  := flint-file safetensors pickle-zip msgpack sentencepiece config-json model
FUZZ_SECONDS  ?= 300
FUZZ_SMOKE_SECONDS ?= 5
# A unit slower than this is a finding (a hang); raise it on a loaded machine, where starvation looks like a hang.
FUZZ_TIMEOUT  ?= 20
FUZZ_FLAGS    := --build-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
                 -Xswiftc -parse-as-library -Xswiftc -use-ld=lld
FIX           := Tests/Fixtures

fuzz-build: deps
	@mkdir -p .build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  $(SWIFT) build $(FUZZ_FLAGS) --product fuzz-$$t > .build-fuzz/build.log 2>&1 || { grep -E "error" .build-fuzz/build.log; exit 1; }; \
	done

# Seeds: the committed fixtures each parser reads.
fuzz-corpus:
	@c=.build-fuzz/corpus; mkdir -p $$c/flint-file $$c/model $$c/safetensors $$c/pickle-zip $$c/msgpack \
	  $$c/sentencepiece $$c/config-json .build-fuzz/crashes; \
	cp $(FIX)/format-golden/*.flint $$c/flint-file/; cp $(FIX)/format-golden/*.flint $$c/model/; \
	cp $(FIX)/models/flan-tiny/model.safetensors $$c/safetensors/; \
	for f in $(FIX)/formats/*/*.bin; do cp $$f $$c/pickle-zip/$$(basename $$(dirname $$f))-$$(basename $$f); done; \
	for f in $(FIX)/formats/*/*.msgpack; do cp $$f $$c/msgpack/$$(basename $$(dirname $$f))-$$(basename $$f); done; \
	cp $(FIX)/models/flan-tiny/spiece.model $$c/sentencepiece/; \
	for f in $(FIX)/models/*/config.json $(FIX)/formats/*/config.json; do \
	  cp $$f $$c/config-json/$$(basename $$(dirname $$f)).json; done

fuzz-run = for t in $(FUZZ_TARGETS); do \
	  ASAN_OPTIONS=detect_leaks=0 .build-fuzz/debug/fuzz-$$t .build-fuzz/corpus/$$t -max_total_time=$(1) -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=2048 -detect_leaks=0 \
	    -artifact_prefix=.build-fuzz/crashes/$$t- -print_final_stats=1 > .build-fuzz/$$t.log 2>&1; \
	  status=$$?; \
	  echo "fuzz-$$t: $(1) s, $$(grep -h '^stat::number_of_executed_units' .build-fuzz/$$t.log | tail -1 | awk '{print $$2}') executions, peak RSS $$(grep -h '^stat::peak_rss_mb' .build-fuzz/$$t.log | tail -1 | awk '{print $$2}') MB, exit $$status"; \
	  [ $$status -eq 0 ] || { grep -E "ERROR|SUMMARY|Test unit written" .build-fuzz/$$t.log; exit 1; }; \
	done

fuzz: fuzz-build fuzz-corpus
	@$(call fuzz-run,$(FUZZ_SECONDS))

# A few seconds per target (make test): the harnesses build and run.
fuzz-smoke: fuzz-build fuzz-corpus
	@$(call fuzz-run,$(FUZZ_SMOKE_SECONDS))

# CFlintKernels against its portable C reference (Tests/CKernels/kernel_test.c, int4_kernel_test.c for the int4
# kernels), for the paths this CPU runs.
# -ffp-contract=off: the W8A8 kernels promise results bit-identical to the portable (unfused) arithmetic.
KERNEL_SOURCES := $(wildcard Sources/CFlintKernels/*.c) Tests/CKernels/kernel_test.c
INT4_KERNEL_SOURCES := $(wildcard Sources/CFlintKernels/*.c) Tests/CKernels/int4_kernel_test.c
KERNEL_CFLAGS  := -O2 -std=c11 -D_GNU_SOURCE -ffp-contract=off -Wall -Wextra -Werror -ISources/CFlintKernels/include
KERNEL_TEST_DIR := .build/ckernels
HOST_CC ?= $(shell command -v clang 2>/dev/null || command -v cc)

kernel-test: $(KERNEL_SOURCES) $(INT4_KERNEL_SOURCES)
	@mkdir -p $(KERNEL_TEST_DIR)
	$(HOST_CC) $(KERNEL_CFLAGS) $(KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/kernel_test
	$(KERNEL_TEST_DIR)/kernel_test
	@# Again with each of the AVX2 prefill's two int16 tiles forced (a timing picks one per CPU: both must be exact).
	FLINT_AVX2_UNSIGNED_TILE=0 $(KERNEL_TEST_DIR)/kernel_test > /dev/null
	FLINT_AVX2_UNSIGNED_TILE=1 $(KERNEL_TEST_DIR)/kernel_test > /dev/null
	$(HOST_CC) $(KERNEL_CFLAGS) $(INT4_KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/int4_kernel_test
	$(KERNEL_TEST_DIR)/int4_kernel_test

# The NEON kernels (with and without sdot) cross-compiled with Debian's gcc-aarch64-linux-gnu and run under
# qemu-user twice: as a CPU with the dot-product extension (qemu's default "max") and as a Cortex-A53 without it.
kernel-test-arm: $(KERNEL_SOURCES) $(INT4_KERNEL_SOURCES)
	@mkdir -p $(KERNEL_TEST_DIR)
	aarch64-linux-gnu-gcc $(KERNEL_CFLAGS) -static $(KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/kernel_test_arm64
	qemu-aarch64 $(KERNEL_TEST_DIR)/kernel_test_arm64
	qemu-aarch64 -cpu cortex-a53 $(KERNEL_TEST_DIR)/kernel_test_arm64
	aarch64-linux-gnu-gcc $(KERNEL_CFLAGS) -static $(INT4_KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/int4_kernel_test_arm64
	qemu-aarch64 $(KERNEL_TEST_DIR)/int4_kernel_test_arm64
	qemu-aarch64 -cpu cortex-a53 $(KERNEL_TEST_DIR)/int4_kernel_test_arm64

# Converts the demo model (a small T5 trained to reverse word lists) to int8, inspects it, runs it, and verifies
# it against its float original.
demo: release
	@mkdir -p $(DEMO_OUT)
	$(RELEASE_BIN) convert $(DEMO_DIR) -o $(DEMO_OUT)/demo-int8.flint --quant int8
	$(RELEASE_BIN) inspect $(DEMO_OUT)/demo-int8.flint
	$(RELEASE_BIN) run $(DEMO_OUT)/demo-int8.flint "reverse: red apple blue" "reverse: one two three four five"
	$(RELEASE_BIN) verify $(DEMO_OUT)/demo-int8.flint --reference $(DEMO_DIR) --prompts Tools/demo-prompts.txt --report $(DEMO_OUT)/verify.md

# Regenerates the committed fixtures with the real Hugging Face libraries (needs PyPI; see Tools/README.md).
fixtures:
	bash Tools/setup_venvs.sh all
	Tools/.venv-hf/bin/python Tools/make_vocab.py
	Tools/.venv-hf/bin/python Tools/make_tokenizer_golden.py
	Tools/.venv-hf/bin/python Tools/make_model_fixtures.py
	Tools/.venv-hf/bin/python Tools/make_byt5_fixtures.py
	Tools/.venv-hf/bin/python Tools/make_activation_golden.py
	Tools/.venv-hf/bin/python Tools/train_demo.py
	Tools/.venv-hf/bin/python Tools/make_model_golden.py
	Tools/.venv-hf/bin/python Tools/make_generation_golden.py
	Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py
	Tools/.venv-hf/bin/python Tools/make_pytorch_fixtures.py
	Tools/.venv-tf/bin/python Tools/make_format_fixtures.py
	Tools/.venv-tf/bin/python Tools/make_tf_flax_fixtures.py

# The serve load test (Tools/loadtest/run_loadtest.py; wrk from apt is its client):
#   make loadtest LOADTEST_MODEL=small-int8.flint
LOADTEST_MODEL ?= out/bench/flan-t5-small-int8.flint
LOADTEST_FLAGS ?= --levels 1 8 32 --seconds 10 --rounds 3 --max-tokens 16 --max-batch 16
loadtest-deps:
	@command -v wrk >/dev/null || { SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk; }

loadtest: release loadtest-deps
	python3 Tools/loadtest/run_loadtest.py --flint $(RELEASE_BIN) --model $(LOADTEST_MODEL) $(LOADTEST_FLAGS)

# The peer benchmark (Flint vs CTranslate2 vs transformers; see Tools/bench/README.md).
peers: release
	Tools/.venv-hf/bin/python Tools/bench/run_peers.py --update-readme

clean:
	rm -rf .build .build-fuzz out

# Installs the release `flint` into $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local; PREFIX=$$HOME/.local needs no root).
# Shell completions: `flint --generate-completion-script bash|zsh|fish` (README, "Install the command").
PREFIX ?= /usr/local
BINDIR  = $(DESTDIR)$(PREFIX)/bin

install: release
	install -d $(BINDIR)
	install -m 755 $(RELEASE_BIN) $(BINDIR)/flint

uninstall:
	rm -f $(BINDIR)/flint

# A separate package that depends on Flint by URL and version tag, built in release mode, runs the README's
# library example on the demo model (Tools/check_library_package.sh; not part of `make test`, see README).
library-check: deps
	bash Tools/check_library_package.sh

# The DocC documentation archive of the Flint module (the toolchain's docc; no plugin needed):
# .build-docs/Flint.doccarchive (its own build folder, so the flags do not invalidate .build).
SYMBOL_GRAPHS := .build-docs/symbol-graphs
docs:
	@mkdir -p $(SYMBOL_GRAPHS)
	$(SWIFT) build --scratch-path .build-docs --target Flint -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc $(SYMBOL_GRAPHS)
	docc convert Sources/Flint/Flint.docc --additional-symbol-graph-dir $(SYMBOL_GRAPHS) \
	  --fallback-display-name Flint --fallback-bundle-identifier org.flint.Flint \
	  --output-path .build-docs/Flint.doccarchive
