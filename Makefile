# Flint — build, test and demo. Everything the product needs comes from Debian packages and the Swift toolchain;
# Python is only for Tools/ (fixture and peer scripts), never for building or testing.

SWIFT        ?= swift
APT_PACKAGES := libsentencepiece-dev libhdf5-dev libzstd-dev pkg-config
RELEASE_BIN   = $(shell $(SWIFT) build -c release --show-bin-path)/flint
DEMO_DIR     := Tests/Fixtures/models/demo
DEMO_OUT     := out/demo

.PHONY: all deps build release test demo clean fixtures peers

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

# The whole test suite (what .ci/run runs).
test: deps
	$(SWIFT) test

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
	Tools/.venv-hf/bin/python Tools/bench/run_peers.py

clean:
	rm -rf .build out
