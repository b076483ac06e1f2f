# Flint — build, test and demo. Everything the product needs comes from Debian packages and the Swift toolchain;
# Python is only for Tools/ (fixture and peer scripts), never for building or testing.

SWIFT        ?= swift
APT_PACKAGES := libsentencepiece-dev libhdf5-dev libzstd-dev pkg-config \
                gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
RELEASE_BIN   = $(shell $(SWIFT) build -c release --show-bin-path)/flint
DEMO_DIR     := Tests/Fixtures/models/demo
DEMO_OUT     := out/demo

.PHONY: all deps build release test kernel-test kernel-test-arm demo clean fixtures peers

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

# CFlintKernels against its portable C reference (Tests/CKernels/kernel_test.c), for the paths this CPU runs.
# -ffp-contract=off: the W8A8 kernels promise results bit-identical to the portable (unfused) arithmetic.
KERNEL_SOURCES := $(wildcard Sources/CFlintKernels/*.c) Tests/CKernels/kernel_test.c
KERNEL_CFLAGS  := -O2 -std=c11 -D_GNU_SOURCE -ffp-contract=off -Wall -Wextra -Werror -ISources/CFlintKernels/include
KERNEL_TEST_DIR := .build/ckernels
HOST_CC ?= $(shell command -v clang 2>/dev/null || command -v cc)

kernel-test: $(KERNEL_SOURCES)
	@mkdir -p $(KERNEL_TEST_DIR)
	$(HOST_CC) $(KERNEL_CFLAGS) $(KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/kernel_test
	$(KERNEL_TEST_DIR)/kernel_test

# The NEON kernels (with and without sdot) cross-compiled with Debian's gcc-aarch64-linux-gnu and run under
# qemu-user twice: as a CPU with the dot-product extension (qemu's default "max") and as a Cortex-A53 without it.
kernel-test-arm: $(KERNEL_SOURCES)
	@mkdir -p $(KERNEL_TEST_DIR)
	aarch64-linux-gnu-gcc $(KERNEL_CFLAGS) -static $(KERNEL_SOURCES) -lm -o $(KERNEL_TEST_DIR)/kernel_test_arm64
	qemu-aarch64 $(KERNEL_TEST_DIR)/kernel_test_arm64
	qemu-aarch64 -cpu cortex-a53 $(KERNEL_TEST_DIR)/kernel_test_arm64

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
	Tools/.venv-hf/bin/python Tools/train_demo.py
	Tools/.venv-hf/bin/python Tools/make_model_golden.py
	Tools/.venv-hf/bin/python Tools/make_pytorch_fixtures.py
	Tools/.venv-tf/bin/python Tools/make_format_fixtures.py
	Tools/.venv-tf/bin/python Tools/make_tf_flax_fixtures.py

# The peer benchmark (Flint vs CTranslate2 vs transformers; see Tools/bench/README.md).
peers: release
	Tools/.venv-hf/bin/python Tools/bench/run_peers.py --update-readme

clean:
	rm -rf .build out
