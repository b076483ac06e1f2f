#!/usr/bin/env python3
"""Writes a random-weight checkpoint with a real FLAN-T5 shape, for the benchmarks (not committed).

  make_bench_checkpoint.py --shape flan-t5-small|flan-t5-base|flan-t5-large --out DIR
                           [--format safetensors|bin|h5|msgpack] [--max-shard-size 5GB] [--seed 0]

The PyTorch model is built with transformers' own init (fixed seed) from the real FLAN-T5 config (vocab 32128,
gated-gelu, untied lm_head) and saved by transformers:
  safetensors -> model.safetensors        (Tools/.venv-hf or .venv-tf)
  bin         -> pytorch_model.bin        (Tools/.venv-hf or .venv-tf)
  h5          -> tf_model.h5              (Tools/.venv-tf: TFT5ForConditionalGeneration.from_pretrained(from_pt=True))
  msgpack     -> flax_model.msgpack       (Tools/.venv-tf: FlaxT5ForConditionalGeneration, from_pt=True)
Large models are split into shards with an index file when they exceed --max-shard-size.
The real T5 vocabulary (Tests/Fixtures/vocab/t5/spiece.model) is copied in as spiece.model.
"""
import argparse
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF models need Keras 2 (tf-keras)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_common import T5_SPIECE  # noqa: E402

SHAPES = {
    # Real FLAN-T5 configs (google/flan-t5-{small,base,large} config.json).
    "flan-t5-small": dict(d_model=512, d_kv=64, d_ff=1024, num_heads=6, num_layers=8, num_decoder_layers=8),
    "flan-t5-base": dict(d_model=768, d_kv=64, d_ff=2048, num_heads=12, num_layers=12, num_decoder_layers=12),
    "flan-t5-large": dict(d_model=1024, d_kv=64, d_ff=2816, num_heads=16, num_layers=24, num_decoder_layers=24),
}
COMMON = dict(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
              dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
              architectures=["T5ForConditionalGeneration"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--format", default="safetensors", choices=["safetensors", "bin", "h5", "msgpack"])
    parser.add_argument("--max-shard-size", default="5GB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.format in ("h5", "msgpack"):
        try:
            if args.format == "h5":
                import tensorflow  # noqa: F401
            else:
                import flax  # noqa: F401
        except ImportError:
            sys.exit(f"--format {args.format} needs TensorFlow/Flax: run with Tools/.venv-tf/bin/python "
                     f"(Tools/setup_venvs.sh tf)")

    import torch
    import transformers
    from transformers import T5Config, T5ForConditionalGeneration
    transformers.logging.set_verbosity_error()

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        torch.manual_seed(args.seed)
        config = T5Config(**SHAPES[args.shape], **COMMON)
        model = T5ForConditionalGeneration(config).eval()
        if args.format in ("safetensors", "bin"):
            model.save_pretrained(tmp, safe_serialization=args.format == "safetensors",
                                  max_shard_size=args.max_shard_size)
        else:
            pt_dir = tmp / "_pt"
            model.save_pretrained(pt_dir, safe_serialization=True)
            del model
            if args.format == "h5":
                from transformers import TFT5ForConditionalGeneration
                converted = TFT5ForConditionalGeneration.from_pretrained(pt_dir, from_pt=True)
            else:
                from transformers import FlaxT5ForConditionalGeneration
                converted = FlaxT5ForConditionalGeneration.from_pretrained(pt_dir, from_pt=True)
            converted.save_pretrained(tmp, max_shard_size=args.max_shard_size)
            shutil.rmtree(pt_dir)
        shutil.copy(T5_SPIECE, tmp / "spiece.model")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(out.iterdir())
    total = sum(f.stat().st_size for f in files)
    print(f"{args.shape} ({args.format}) -> {out}: " + ", ".join(f"{f.name} {f.stat().st_size}" for f in files)
          + f"; total {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
