#!/usr/bin/env python3
"""Writes a random-weight FLAN-T5 xl (3B) or xxl (11B) shaped checkpoint as sharded safetensors, shard by shard,
never holding more than one shard in memory (for the scale benchmarks of issue 16; nothing is committed).

  make_big_checkpoint.py --shape flan-t5-xl|flan-t5-xxl --out DIR [--dtype f32|bf16] [--shard-size 2GB]
                         [--seed 0] [--exact] [--remove]

The tensors, names and init follow transformers' T5ForConditionalGeneration as save_pretrained writes it for the
real google/flan-t5-{xl,xxl} configs (gated-gelu, untied lm_head; the tied encoder/decoder embed_tokens copies are
not stored): weights are drawn with the std transformers' _init_weights uses (initializer_factor 1.0), so
activations have realistic magnitudes. Drawing all 11 G normal samples of xxl one by one costs minutes of CPU, which a
niced job on a loaded 2-core host does not get (last session: ~1 s of CPU per 20 s of wall), so by default every
tensor is tiled from a pool of 32 Mi normal samples drawn once (scaled per std, stored in the target dtype): chunks
of 1 Mi values, each copied from a fresh random offset of the pool. The values are then N(0, std) per element,
but chunks repeat across tensors, which does not matter to what the checkpoints are for (conversion time and
memory, load, decode speed, and quantization error, which is per element); --exact draws every value instead.
Pooled shards are streamed from the pool straight into the file in safetensors' layout (no tensor is built, so a
2 GB shard costs one copy instead of four) and each is checked by opening it with safetensors.safe_open; --exact
builds the tensors and writes them with safetensors' save_file. Output: model-0000K-of-0000N.safetensors, model.safetensors.index.json
(metadata.total_size, weight_map), config.json, and the real T5 vocabulary as spiece.model.

Free disk is checked first (with a 10 % margin) and what is needed is printed. The folder is written under a
temporary name and renamed when complete; --remove deletes DIR instead (after the benchmark).
"""
import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_common import T5_SPIECE  # noqa: E402

SHAPES = {
    # google/flan-t5-xl and google/flan-t5-xxl config.json.
    "flan-t5-xl": dict(d_model=2048, d_kv=64, d_ff=5120, num_heads=32, num_layers=24, num_decoder_layers=24),
    "flan-t5-xxl": dict(d_model=4096, d_kv=64, d_ff=10240, num_heads=64, num_layers=24, num_decoder_layers=24),
}
COMMON = dict(vocab_size=32128, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
              tie_word_embeddings=False, relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, dropout_rate=0.1, initializer_factor=1.0, pad_token_id=0, eos_token_id=1,
              decoder_start_token_id=0, model_type="t5", architectures=["T5ForConditionalGeneration"],
              torch_dtype="float32", transformers_version="4.57.6", use_cache=True)


def tensors(c):
    """(name, shape, std) in the order save_pretrained writes them; std 0 means a layer norm (ones)."""
    d, kv, ff, h, v = c["d_model"], c["d_kv"], c["d_ff"], c["num_heads"], c["vocab_size"]
    inner = h * kv
    yield "shared.weight", (v, d), 1.0
    for stack, layers in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
        for i in range(layers):
            p = f"{stack}.block.{i}.layer"
            attn = [("SelfAttention", 0)] + ([("EncDecAttention", 1)] if stack == "decoder" else [])
            for kind, li in attn:
                yield f"{p}.{li}.{kind}.q.weight", (inner, d), (d * kv) ** -0.5
                yield f"{p}.{li}.{kind}.k.weight", (inner, d), d ** -0.5
                yield f"{p}.{li}.{kind}.v.weight", (inner, d), d ** -0.5
                yield f"{p}.{li}.{kind}.o.weight", (d, inner), inner ** -0.5
                if kind == "SelfAttention" and i == 0:
                    yield f"{p}.{li}.{kind}.relative_attention_bias.weight", (c["relative_attention_num_buckets"], h), d ** -0.5
                yield f"{p}.{li}.layer_norm.weight", (d,), 0
            f = 2 if stack == "decoder" else 1
            yield f"{p}.{f}.DenseReluDense.wi_0.weight", (ff, d), d ** -0.5
            yield f"{p}.{f}.DenseReluDense.wi_1.weight", (ff, d), d ** -0.5
            yield f"{p}.{f}.DenseReluDense.wo.weight", (d, ff), ff ** -0.5
            yield f"{p}.{f}.layer_norm.weight", (d,), 0
        yield f"{stack}.final_layer_norm.weight", (d,), 0
    yield "lm_head.weight", (v, d), 1.0


POOL = 1 << 25   # normal samples drawn once (128 MB as float32)
CHUNK = 1 << 20  # values copied per random pool offset


class Pool:
    """N(0, std) values for any std, tiled from one pool of standard normal samples (see the module doc), written
    straight from the pool into the shard file: no tensor is ever materialised, so a shard costs one copy."""

    def __init__(self, torch, generator, dtype):
        self.torch, self.generator, self.dtype = torch, generator, dtype
        self.base = torch.empty(POOL, dtype=torch.float32).normal_(0.0, 1.0, generator=generator)
        self.scaled = {}
        self.ones = {}

    def _bytes(self, std):
        """The pool scaled to `std`, as raw little-endian bytes of the target dtype."""
        pool = self.scaled.get(std)
        if pool is None:
            t = (self.base * std).to(self.dtype)
            bits = self.torch.int16 if self.dtype == self.torch.bfloat16 else self.torch.int32
            pool = self.scaled[std] = memoryview(t.view(bits).numpy()).cast("B")
        return pool

    def write(self, f, count, std, width):
        """Writes `count` values: ones for std 0 (a layer norm), else pool chunks from random offsets."""
        if std == 0:
            one = self.torch.ones(count, dtype=self.dtype)
            bits = self.torch.int16 if self.dtype == self.torch.bfloat16 else self.torch.int32
            f.write(memoryview(one.view(bits).numpy()).cast("B"))
            return
        pool = self._bytes(std)
        chunks = (count + CHUNK - 1) // CHUNK
        offsets = self.torch.randint(0, POOL - CHUNK + 1, (chunks,), generator=self.generator).tolist()
        for k, o in enumerate(offsets):
            take = min(CHUNK, count - k * CHUNK)
            f.write(pool[o * width:(o + take) * width])


def write_pooled_shard(path, shard, pool, dtype, width):
    """One safetensors file in the library's layout (8-byte little-endian header length, the JSON header padded
    with spaces to a multiple of 8, then the tensors back to back in header order), its data streamed from the
    pool. The caller checks the result with safetensors.safe_open."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in shard:
        n = width * numel(shape)
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, shape, std in shard:
            pool.write(f, numel(shape), std, width)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def parse_size(text):
    units = {"KB": 1e3, "MB": 1e6, "GB": 1e9}
    for u, m in units.items():
        if text.upper().endswith(u):
            return int(float(text[:-2]) * m)
    return int(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dtype", default=None, choices=["f32", "bf16"],
                        help="default: f32 for xl, bf16 for xxl (as many xxl repos ship)")
    parser.add_argument("--shard-size", default="2GB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact", action="store_true",
                        help="draw every value with torch's generator (slow) instead of tiling a sample pool")
    parser.add_argument("--remove", action="store_true", help="delete --out and exit")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.remove:
        shutil.rmtree(out, ignore_errors=True)
        print(f"removed {out}")
        return

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    config = dict(SHAPES[args.shape], **COMMON)
    dtype = args.dtype or ("bf16" if args.shape == "flan-t5-xxl" else "f32")
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    config["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    width = 2 if dtype == "bf16" else 4
    specs = list(tensors(config))
    total = sum(width * (s[0] * (s[1] if len(s) > 1 else 1)) for _, s, _ in specs)
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    need = int(total * 1.1)
    print(f"{args.shape} {dtype}: {len(specs)} tensors, {total / 1e9:.2f} GB; free on {out.parent}: "
          f"{free / 1e9:.1f} GB (need {need / 1e9:.1f} GB)", flush=True)
    if free < need:
        sys.exit(f"not enough free disk: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB needed")

    limit = parse_size(args.shard_size)
    shards, current, size = [], [], 0
    for name, shape, std in specs:
        n = width * numel(shape)
        if current and size + n > limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape, std))
        size += n
    if current:
        shards.append(current)

    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    generator = torch.Generator().manual_seed(args.seed)
    pool = None if args.exact else Pool(torch, generator, torch_dtype)
    weight_map = {}
    started = time.time()
    try:
        for k, shard in enumerate(shards, 1):
            file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            for name, _, _ in shard:
                weight_map[name] = file
            if pool is not None:
                write_pooled_shard(tmp / file, shard, pool, dtype, width)
                with safe_open(str(tmp / file), framework="pt") as check:  # the library reads what we wrote
                    assert sorted(check.keys()) == sorted(n for n, _, _ in shard), file
                    name, shape, _ = shard[-1]
                    assert list(check.get_slice(name).get_shape()) == list(shape), (file, name)
            else:
                data = {}
                for name, shape, std in shard:
                    if std == 0:
                        data[name] = torch.ones(shape, dtype=torch_dtype)
                    else:
                        t = torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
                        data[name] = t.to(torch_dtype).contiguous()
                save_file(data, str(tmp / file), metadata={"format": "pt"})
                del data
            print(f"  {file}: {len(shard)} tensors ({time.time() - started:.0f} s)", flush=True)
        with open(tmp / "model.safetensors.index.json", "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        with open(tmp / "config.json", "w") as f:
            json.dump(config, f, indent=2)
        shutil.copy(T5_SPIECE, tmp / "spiece.model")
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"{args.shape} ({dtype}, {'exact draws' if args.exact else 'pooled samples'}) -> {out}: {len(shards)} "
          f"shards, {total / 1e9:.2f} GB in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
