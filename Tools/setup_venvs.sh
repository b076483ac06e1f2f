#!/usr/bin/env bash
# Creates the two Python environments the fixture scripts need. Idempotent: an environment that already
# exists is only topped up (pip skips satisfied requirements).
#   Tools/.venv-hf : torch + transformers + sentencepiece (+ ctranslate2) — vocab, tokenizer and model fixtures.
#   Tools/.venv-tf : tensorflow-cpu + jax/flax — only for writing tf_model.h5 / flax_model.msgpack bench checkpoints.
# Two environments because TensorFlow pins a protobuf that breaks sentencepiece's generated protobuf module.
#
# Usage: Tools/setup_venvs.sh [hf|tf|all]   (default all)
set -euo pipefail
cd "$(dirname "$0")"
TORCH_WHEEL="${TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"
PYTHON="${PYTHON:-python3}"
which_env="${1:-all}"

make_env() {  # $1 = venv dir, $2 = requirements file
  local venv="$1" req="$2"
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
  fi
  if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "$TORCH_WHEEL"
  fi
  "$venv/bin/pip" install --quiet -r "$req"
}

case "$which_env" in
  hf)  make_env .venv-hf requirements-hf.txt ;;
  tf)  make_env .venv-tf requirements-tf.txt ;;
  all) make_env .venv-hf requirements-hf.txt; make_env .venv-tf requirements-tf.txt ;;
  *) echo "usage: $0 [hf|tf|all]" >&2; exit 2 ;;
esac
