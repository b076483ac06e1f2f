#!/usr/bin/env python3
"""Outlier-heavy variants of the trained demo model, made by function-preserving channel rescalings
(REFERENCE.md §8; issue 9 item 6), with goldens computed by transformers.

For chosen channels c and a scale s, each operation multiplies one channel of an operator's output by s and
divides the consuming operator's input column c by s, so the float model computes the same function while the
activation entering the consumer gets a channel s times larger and the consumer's weight column s times smaller —
what real FLAN-T5 checkpoints look like at `wo`, attention `o` and after the layer norms:
  - `wi_1` row c × s, `wo` column c ÷ s                         (gated FFN: the input of `wo`)
  - `v` row c × s, `o` column c ÷ s                             (attention: the input of `o`)
  - layer-norm weight channel c × s, the following linears' column c ÷ s
      (self-attention norm → q, k, v; cross-attention norm → q; FFN norm → wi_0, wi_1;
       encoder final norm → every decoder block's cross-attention k, v; decoder final norm → lm_head)

Variants (Tests/Fixtures/outliers/<name>/):
  outlier-s30, outlier-s100, outlier-s300   every site of every block, and both final norms, at s = 30/100/300
  outlier-s3000                             the same at s = 3000 (not committed: --folders only, for
                                            Tools/measure_outlier_recipes.py; folds need scales near the 1e4 clamp)
  outlier-block                             s = 300 at every site of encoder.block.1 only
  outlier-head                              s = 300 only at decoder.final_layer_norm → lm_head

Only the transform is committed (transform.json: the ordered operations, and per changed tensor a checksum of
the result), not the 4.3 MB of weights: the Swift tests rebuild each variant from models/demo by applying the
operations in order in float32 (x * s and x / s are exactly rounded IEEE operations, so Python and Swift get
bit-identical weights; the checksums prove it). golden.json has the layout of make_model_golden.py's (prompt,
input_ids, first_logits, greedy_ids, greedy_text), so `flint verify --golden` reads it.

The script asserts, with transformers in float32, that every variant's logits over the greedy path stay within
1e-4 relative (max |Δ| / max |logit|) of the demo model's and that the greedy ids are the same, on the golden
prompts and Tools/demo-prompts.txt.

  Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py              # writes Tests/Fixtures/outliers/
  Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py --folders /tmp/outliers
      # also writes complete model folders (config, spiece.model, model.safetensors) there, for flint convert
"""
import argparse
import json
import shutil
import sys
import warnings

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import GenerationConfig, T5ForConditionalGeneration, T5Tokenizer

from fixture_common import FIXTURES_DIR, MODELS_DIR, TOOLS_DIR
from make_model_golden import COMMON, DEMO_EXTRA_PROMPTS, GREEDY, SMALL_VOCAB_PROMPTS, floats

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

BASE = MODELS_DIR / "demo"
OUT_DIR = FIXTURES_DIR / "outliers"
CHANNELS_PER_SITE = 2
HEAD_CHANNELS = 4
SEED = 9
MAX_RELATIVE_DIFF = 1e-4


def pick(rng, count, n):
    return sorted(int(c) for c in rng.choice(n, size=count, replace=False))


def block_sites(stack, b, d_model, d_ff, inner, rng):
    """The operations for one block: (tensor, axis, channel, "multiply"|"divide") without the factor."""
    ops = []
    p = f"{stack}.block.{b}"
    attn = "layer.0.SelfAttention"
    ffn = "layer.2.DenseReluDense" if stack == "decoder" else "layer.1.DenseReluDense"
    ffn_norm = "layer.2.layer_norm" if stack == "decoder" else "layer.1.layer_norm"

    def pair(producer, producer_axis, consumers, n, count=CHANNELS_PER_SITE):
        for c in pick(rng, count, n):
            ops.append((producer, producer_axis, c, "multiply"))
            for consumer in consumers:
                ops.append((consumer, "column", c, "divide"))

    # Self-attention: its norm → q, k, v; then v → o.
    pair(f"{p}.layer.0.layer_norm.weight", "element",
         [f"{p}.{attn}.{x}.weight" for x in ("q", "k", "v")], d_model)
    pair(f"{p}.{attn}.v.weight", "row", [f"{p}.{attn}.o.weight"], inner)
    if stack == "decoder":
        cross = "layer.1.EncDecAttention"
        pair(f"{p}.layer.1.layer_norm.weight", "element", [f"{p}.{cross}.q.weight"], d_model)
        pair(f"{p}.{cross}.v.weight", "row", [f"{p}.{cross}.o.weight"], inner)
    # FFN: its norm → wi_0, wi_1; then wi_1 → wo.
    pair(f"{p}.{ffn_norm}.weight", "element", [f"{p}.{ffn}.wi_0.weight", f"{p}.{ffn}.wi_1.weight"], d_model)
    pair(f"{p}.{ffn}.wi_1.weight", "row", [f"{p}.{ffn}.wo.weight"], d_ff)
    return ops


def variant_operations(config, which, rng):
    d_model, d_ff, inner = config.d_model, config.d_ff, config.num_heads * config.d_kv
    ops = []
    if which == "all":
        for stack, n in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
            for b in range(n):
                ops += block_sites(stack, b, d_model, d_ff, inner, rng)
        for c in pick(rng, CHANNELS_PER_SITE, d_model):
            ops.append(("encoder.final_layer_norm.weight", "element", c, "multiply"))
            for b in range(config.num_decoder_layers):
                for x in ("k", "v"):
                    ops.append((f"decoder.block.{b}.layer.1.EncDecAttention.{x}.weight", "column", c, "divide"))
        ops += head_operations(rng, d_model, CHANNELS_PER_SITE)
    elif which == "block":
        ops += block_sites("encoder", 1, d_model, d_ff, inner, rng)
    elif which == "head":
        ops += head_operations(rng, d_model, HEAD_CHANNELS)
    return ops


def head_operations(rng, d_model, count):
    ops = []
    for c in pick(rng, count, d_model):
        ops.append(("decoder.final_layer_norm.weight", "element", c, "multiply"))
        ops.append(("lm_head.weight", "column", c, "divide"))
    return ops


VARIANTS = [
    ("outlier-s30", "all", 30.0, "every site of every block and both final norms, s = 30"),
    ("outlier-s100", "all", 100.0, "every site of every block and both final norms, s = 100"),
    ("outlier-s300", "all", 300.0, "every site of every block and both final norms, s = 300"),
    ("outlier-s3000", "all", 3000.0, "every site of every block and both final norms, s = 3000 (10x the issue's "
     "largest scale; folds then need scales in the thousands, near the smoothing clamp of 1e4)"),
    ("outlier-block", "block", 300.0, "s = 300 at every site of encoder.block.1 only (the injected block)"),
    ("outlier-head", "head", 300.0, "s = 300 only at decoder.final_layer_norm → lm_head (only the head damaged)"),
]


# Written only with --folders (for Tools/measure_outlier_recipes.py), never into Tests/Fixtures (size budget).
FOLDERS_ONLY = {"outlier-s3000"}


def apply(tensors, ops, scale):
    """Applies the operations in order, in float32, exactly as the Swift side does."""
    s = np.float32(scale)
    for name, axis, c, op in ops:
        w = tensors[name]
        assert w.dtype == np.float32
        if axis == "element":
            target = w[c:c + 1]
        elif axis == "row":
            target = w[c:c + 1, :]
        else:
            target = w[:, c:c + 1]
        target[...] = (target * s) if op == "multiply" else (target / s)
        assert target.dtype == np.float32


def checksum(array):
    """Sum of the float32 bit patterns (as unsigned 32-bit integers) — cheap, and the Swift side recomputes it."""
    return int(np.ascontiguousarray(array).view(np.uint32).astype(np.uint64).sum())


def generation_config(model):
    return GenerationConfig(decoder_start_token_id=model.config.decoder_start_token_id,
                            pad_token_id=model.config.pad_token_id, eos_token_id=model.config.eos_token_id,
                            **COMMON, **GREEDY)


def write_json(path, value):
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    assert json.loads(tmp.read_text()) == value
    tmp.replace(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", help="also write complete model folders under this directory")
    args = parser.parse_args()
    torch.set_num_threads(1)

    base_tensors = load_file(str(BASE / "model.safetensors"))
    base = T5ForConditionalGeneration.from_pretrained(BASE, torch_dtype=torch.float32).eval()
    tokenizer = T5Tokenizer(vocab_file=str(BASE / "spiece.model"))
    golden_prompts = SMALL_VOCAB_PROMPTS + DEMO_EXTRA_PROMPTS
    check_prompts = golden_prompts + [l for l in (TOOLS_DIR / "demo-prompts.txt").read_text().splitlines() if l]

    base_out = {}
    for prompt in check_prompts:
        ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            greedy = base.generate(ids, generation_config=generation_config(base))
            logits = base(input_ids=ids, decoder_input_ids=greedy).logits[0]
        base_out[prompt] = (greedy, logits)

    OUT_DIR.mkdir(exist_ok=True)
    for name, which, scale, description in VARIANTS:
        if name in FOLDERS_ONLY and not args.folders:
            continue
        rng = np.random.default_rng(SEED)
        ops = variant_operations(base.config, which, rng)
        tensors = {k: v.copy() for k, v in base_tensors.items()}
        apply(tensors, ops, scale)
        changed = sorted({op[0] for op in ops})
        model = T5ForConditionalGeneration.from_pretrained(BASE, torch_dtype=torch.float32).eval()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=False)
        for k, v in tensors.items():
            assert torch.equal(model.state_dict()[k], torch.from_numpy(v)), k

        worst = 0.0
        cases = []
        for index, prompt in enumerate(check_prompts):
            ids = torch.tensor([tokenizer(prompt).input_ids])
            base_greedy, base_logits = base_out[prompt]
            with torch.no_grad():
                greedy = model.generate(ids, generation_config=generation_config(model))
                logits = model(input_ids=ids, decoder_input_ids=base_greedy).logits[0]
                first = model(input_ids=ids, decoder_input_ids=torch.tensor([[model.config.decoder_start_token_id]])).logits[0, 0]
            assert torch.equal(greedy, base_greedy), f"{name}: greedy ids changed for {prompt!r}"
            rel = float((logits - base_logits).abs().max() / base_logits.abs().max())
            assert rel <= MAX_RELATIVE_DIFF, f"{name}: logits moved by {rel:.2e} relative for {prompt!r}"
            worst = max(worst, rel)
            if index < len(golden_prompts):
                cases.append({"prompt": prompt, "input_ids": ids[0].tolist(), "first_logits": floats(first),
                              "greedy_ids": greedy[0].tolist(),
                              "greedy_text": tokenizer.decode(greedy[0], skip_special_tokens=True)})
        # Folder-only variants keep their transform and golden in the folder, not in Tests/Fixtures.
        out = __import__("pathlib").Path(args.folders) / name if name in FOLDERS_ONLY else OUT_DIR / name
        out.mkdir(parents=True, exist_ok=True)
        transform = {
            "base": "models/demo",
            "name": name,
            "description": description,
            "scale": scale,
            "operations": [{"tensor": t, "axis": a, "channel": c, "op": o, "factor": scale} for t, a, c, o in ops],
            "checksums": {t: checksum(tensors[t]) for t in changed},
            "max_relative_logit_diff_vs_base": worst,
        }
        golden = {
            "model": name,
            "class": "T5ForConditionalGeneration",
            "dtype": "float32",
            "cases": cases,
            "generation": {"common": {k: v for k, v in COMMON.items() if v is not None}, "greedy": GREEDY,
                           "decoder_start_token_id": model.config.decoder_start_token_id,
                           "eos_token_id": model.config.eos_token_id, "pad_token_id": model.config.pad_token_id},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }
        write_json(out / "transform.json", transform)
        write_json(out / "golden.json", golden)
        if args.folders:
            folder = __import__("pathlib").Path(args.folders) / name
            folder.mkdir(parents=True, exist_ok=True)
            for f in ("config.json", "generation_config.json", "spiece.model"):
                shutil.copy(BASE / f, folder / f)
            save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
            if out != folder:
                shutil.copy(out / "golden.json", folder / "golden.json")
        print(f"{name}: {len(ops)} operations on {len(changed)} tensors, float logits within {worst:.1e} "
              f"relative of demo over {len(check_prompts)} prompts, same greedy ids")


if __name__ == "__main__":
    sys.exit(main())
