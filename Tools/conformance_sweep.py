#!/usr/bin/env python3
"""Conformance sweep over T5-family configs the committed fixtures do not all cover: for each, a tiny random checkpoint
written by transformers (save_pretrained), goldens from transformers (first-step logits, greedy and 4-beam ids with the
attention mask tokenizer(text) gives; encoder states for encoder models), then `flint verify --golden` / `flint embed`
on the folder, on `flint convert --quant f32` and on the default int8 conversion (int8 is reported, not required to
match: random tiny models have near-ties). Writes OUT/results.json. Not run by the tests; a tool for finding gaps.
usage: Tools/.venv-hf/bin/python Tools/conformance_sweep.py FLINT OUT [names...]"""
import json, shutil, subprocess, sys, warnings
from pathlib import Path
import torch, transformers
from transformers import (T5Config, MT5Config, UMT5Config, T5ForConditionalGeneration, MT5ForConditionalGeneration,
                          UMT5ForConditionalGeneration, T5EncoderModel, MT5EncoderModel, UMT5EncoderModel,
                          T5Tokenizer, GenerationConfig)
from fixture_common import SMALL_SPIECE, TOKENIZER_GOLDEN_DIR
warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

OUT = None  # set from the command line
SMALL_VOCAB = (len(T5Tokenizer(vocab_file=str(SMALL_SPIECE))) + 7) // 8 * 8
TOKLEN = len(T5Tokenizer(vocab_file=str(SMALL_SPIECE)))
LONG = ("summarize: The old man and the young woman walk to the market every morning. "
        "They buy bread, milk, rice and fish, and then they sit near the river to eat. "
        "The sun is hot, the sky is blue and the birds sing in the green trees.")
PROMPTS = ["reverse: red apple blue", "The cat <extra_id_0> in the park <extra_id_1>.", LONG]
SIZES = dict(d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2)
T5 = (T5Config, T5ForConditionalGeneration)
MT5 = (MT5Config, MT5ForConditionalGeneration)
UMT5 = (UMT5Config, UMT5ForConditionalGeneration)

def c(kind, **kw):
    return dict(kind=kind, kw={**SIZES, "vocab_size": SMALL_VOCAB, **kw})

CASES = {
    "mt5-default": c(MT5),
    "mt5-tied": c(MT5, tie_word_embeddings=True),
    "t5-gated-silu": c(T5, feed_forward_proj="gated-silu", tie_word_embeddings=False),
    "umt5-gated-silu": c(UMT5, feed_forward_proj="gated-silu", tie_word_embeddings=False),
    "t5-gelu": c(T5, feed_forward_proj="gelu", tie_word_embeddings=False),
    "t5-gated-relu": c(T5, feed_forward_proj="gated-relu", tie_word_embeddings=False),
    "t5-silu": c(T5, feed_forward_proj="silu", tie_word_embeddings=False),
    "t5-swish": c(T5, feed_forward_proj="gated-swish", tie_word_embeddings=False),
    "t5-gelu-pt-tanh": c(T5, feed_forward_proj="gated-gelu", dense_act_fn="gelu_pytorch_tanh", tie_word_embeddings=False),
    "t5-gelu-fast": c(T5, feed_forward_proj="gated-gelu_fast", tie_word_embeddings=False),
    "t5-quick-gelu": c(T5, feed_forward_proj="gated-quick_gelu", tie_word_embeddings=False),
    "t5-gelu-accurate": c(T5, feed_forward_proj="gated-gelu_accurate", tie_word_embeddings=False),
    "t5-gelu-python": c(T5, feed_forward_proj="gelu_python", tie_word_embeddings=False),
    "t5-relu6": c(T5, feed_forward_proj="relu6", tie_word_embeddings=False),
    "t5-tanh": c(T5, feed_forward_proj="gated-tanh", tie_word_embeddings=False),
    "t5-dec1": c(T5, num_layers=3, num_decoder_layers=1, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-dec3": c(T5, num_layers=1, num_decoder_layers=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-buckets16-md20": c(T5, relative_attention_num_buckets=16, relative_attention_max_distance=20,
                           feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-buckets64-md40": c(T5, relative_attention_num_buckets=64, relative_attention_max_distance=40,
                           feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-buckets7-md9": c(T5, relative_attention_num_buckets=7, relative_attention_max_distance=9,
                           feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-odd-heads": c(T5, d_model=40, d_kv=6, num_heads=3, d_ff=52, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-wide-inner": c(T5, d_model=24, d_kv=16, num_heads=5, d_ff=40, feed_forward_proj="relu"),
    "t5-eps1e-3": c(T5, layer_norm_epsilon=1e-2, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-ids": c(T5, pad_token_id=3, eos_token_id=5, decoder_start_token_id=7, feed_forward_proj="gated-gelu",
                tie_word_embeddings=False),
    "t5-vocab-exact": c(T5, vocab_size=TOKLEN, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "t5-vocab-odd": c(T5, vocab_size=TOKLEN + 13, feed_forward_proj="relu"),
    "t5-tied-gated": c(T5, feed_forward_proj="gated-gelu", tie_word_embeddings=True),
    "umt5-tied": c(UMT5, tie_word_embeddings=True),
    "umt5-dec1": c(UMT5, num_layers=2, num_decoder_layers=2, d_kv=6, num_heads=3, tie_word_embeddings=False),
    "t5enc-relu-tied": dict(kind=(T5Config, T5EncoderModel), kw={**SIZES, "vocab_size": SMALL_VOCAB, "feed_forward_proj": "relu"}),
    "mt5enc": dict(kind=(MT5Config, MT5EncoderModel), kw={**SIZES, "vocab_size": SMALL_VOCAB}),
    "umt5enc": dict(kind=(UMT5Config, UMT5EncoderModel), kw={**SIZES, "vocab_size": SMALL_VOCAB}),
    "t5enc-silu": dict(kind=(T5Config, T5EncoderModel), kw={**SIZES, "vocab_size": SMALL_VOCAB, "feed_forward_proj": "gated-silu"}),
    "mt5-bin": dict(c(MT5), bin=True),
    "byt5": dict(kind=T5, kw={**SIZES, "vocab_size": 384, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}, byt5=True),
    "umt5-bin": dict(c(UMT5, tie_word_embeddings=False), bin=True),
}

def floats(t):
    return t.detach().to(torch.float32).double().tolist()

def build(name, spec, seed):
    cfgcls, cls = spec["kind"]
    kw = dict(spec["kw"])
    kw.setdefault("pad_token_id", 0); kw.setdefault("eos_token_id", 1); kw.setdefault("decoder_start_token_id", 0)
    torch.manual_seed(seed)
    cfg = cfgcls(**kw)
    model = cls(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n == "decoder.final_layer_norm.weight": p.uniform_(1.5, 3.0)
            elif "layer_norm" in n: p.uniform_(0.5, 1.5)
            elif "relative_attention_bias" in n: p.mul_(4.0)
            elif cfg.tie_word_embeddings and (n.endswith(".o.weight") or n.endswith(".wo.weight")): p.mul_(25.0)
        if hasattr(model, "lm_head"):
            model.get_output_embeddings().weight[cfg.eos_token_id].mul_(3.0)
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    model.save_pretrained(d, safe_serialization=not spec.get("bin", False))
    if spec.get("byt5"):
        for f in ["tokenizer_config.json", "special_tokens_map.json"]:
            shutil.copy(TOKENIZER_GOLDEN_DIR / "folders" / "byt5-legacy" / f, d / f)
        cfg = json.loads((d / "config.json").read_text()); cfg["tokenizer_class"] = "ByT5Tokenizer"
        (d / "config.json").write_text(json.dumps(cfg))
    else:
        shutil.copy(SMALL_SPIECE, d / "spiece.model")
    return d

def golden(d):
    cfg = json.loads((d / "config.json").read_text())
    tok = T5Tokenizer(vocab_file=str(d / "spiece.model")) if (d / "spiece.model").exists() else transformers.AutoTokenizer.from_pretrained(d)
    arch = cfg["architectures"][0]
    cls = getattr(transformers, arch)
    model = cls.from_pretrained(d, torch_dtype=torch.float32).eval()
    cases = []
    for prompt in PROMPTS:
        ids = torch.tensor([tok(prompt).input_ids])
        with torch.no_grad():
            if "Encoder" in arch:
                h = model(input_ids=ids).last_hidden_state
                cases.append(dict(prompt=prompt, input_ids=ids[0].tolist(), encoder_last_hidden_state=floats(h[0])))
                continue
            start = model.config.decoder_start_token_id
            first = model(input_ids=ids, decoder_input_ids=torch.tensor([[start]])).logits[0, 0]
            gc = lambda **o: GenerationConfig(decoder_start_token_id=start, pad_token_id=model.config.pad_token_id,
                                              eos_token_id=model.config.eos_token_id, max_new_tokens=20, **o)
            mask = torch.ones_like(ids)  # what tokenizer(text) gives generate(**inputs)
            def gen(**o):
                try:
                    return model.generate(ids, attention_mask=mask, generation_config=gc(**o))
                except IndexError:  # 4.57 sizes the decoder cache by num_layers
                    return model.generate(ids, attention_mask=mask, generation_config=gc(**o), use_cache=False)
            greedy = gen(do_sample=False, num_beams=1)
            beam = gen(do_sample=False, num_beams=4, length_penalty=1.0, early_stopping=False)
            cases.append(dict(prompt=prompt, input_ids=ids[0].tolist(), first_logits=floats(first),
                              greedy_ids=greedy[0].tolist(), beam4_ids=beam[0].tolist()))
    g = dict(cases=cases, generation=dict(common=dict(max_new_tokens=20),
                                          beam4=dict(num_beams=4, length_penalty=1.0, early_stopping=False, max_new_tokens=20)))
    (d / "golden.json").write_text(json.dumps(g))
    return g

def sh(*args):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr

def check_embed(flint, model, g, tol):
    worst = 0.0
    for case in g["cases"]:
        rc, out, err = sh(flint, "embed", model, case["prompt"], "--json")
        if rc != 0: return f"embed failed: {err.strip()[:300]}"
        j = json.loads(out)
        if j["input_ids"] != case["input_ids"]: return "token ids differ"
        exp = torch.tensor(case["encoder_last_hidden_state"]); got = torch.tensor(j["last_hidden_state"])
        if exp.shape != got.shape: return f"shape {tuple(got.shape)} vs {tuple(exp.shape)}"
        worst = max(worst, float((exp - got).abs().max() / exp.abs().max()))
    return ("ok" if worst <= tol else "MISMATCH") + f" rel {worst:.1e}"

def check_verify(flint, model, d, tol):
    rc, out, err = sh(flint, "verify", model, "--golden", d / "golden.json", "--json", "--tolerance", tol)
    try:
        j = json.loads(out)
    except Exception:
        return f"verify failed rc {rc}: {(err or out).strip()[:300]}"
    if j.get("passed"):
        return f"ok rel {j['max_first_logits_relative_diff']:.1e}"
    return f"FAIL rel {j.get('max_first_logits_relative_diff', -1):.1e}: " + "; ".join(j.get("failures", []))[:300]

def main():
    global OUT
    flint = Path(sys.argv[1]).resolve()
    OUT = Path(sys.argv[2]).resolve()
    names = sys.argv[3:] or list(CASES)
    results = {}
    for i, name in enumerate(names):
        spec = CASES[name]
        d = build(name, spec, 1000 + i)
        try:
            g = golden(d)
        except Exception as e:
            results[name] = f"transformers failed: {e}"[:200]; print(name, results[name], flush=True); continue
        encoder = "encoder_last_hidden_state" in g["cases"][0] and "first_logits" not in g["cases"][0]
        row = []
        for label, quant in [("folder", None), ("f32", "f32"), ("int8", "int8")]:
            model = d
            if quant:
                model = d / f"{quant}.flint"
                rc, out, err = sh(flint, "convert", d, "-o", model, "--quant", quant, "--force")
                if rc != 0:
                    row.append(f"{label}: convert failed: {err.strip()[:300]}"); continue
            tol = 1e-4 if quant != "int8" else 0.2
            r = check_embed(flint, model, g, tol) if encoder else check_verify(flint, model, d, tol)
            if quant == "int8":
                # Quantization moves near-tied random-weight logits: report, do not fail.
                r = r.replace("FAIL", "differs").replace("MISMATCH", "differs")
            row.append(f"{label}: {r}")
        results[name] = " | ".join(row)
        print(f"{name}: {results[name]}", flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))

if __name__ == "__main__":
    main()
