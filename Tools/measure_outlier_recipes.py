#!/usr/bin/env python3
"""The recipe table of issue 9: every conversion recipe × outlier variant × int8 kernels, measured with
`flint verify --json` against the float model (teacher-forced top-1 / greedy exact match / mean KL), on the 40
reverse prompts of Tools/outlier-prompts.txt (the demo model's own task), 32 new tokens.

  Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py --folders /tmp/outliers
  swift build -c release --product flint
  Tools/.venv-hf/bin/python Tools/measure_outlier_recipes.py --flint .build/release/flint --folders /tmp/outliers

Prints a Markdown table (and --json FILE writes the raw numbers). The peers are measured the same way on the
same prompts against transformers' float32 model: CTranslate2 int8 (`TransformersConverter(quantization="int8")`,
compute type int8; teacher-forced logits from `translate_batch(target_prefix=float greedy,
return_logits_vocab=True)`) and torch dynamic int8 (`torch.ao.quantization.quantize_dynamic` of every
nn.Linear to qint8). --no-peers skips them.
"""
import copy
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
RECIPES = [
    ("old default (data-free, wo f32)", ["--no-calibration"]),
    ("data-free, no keep", ["--no-calibration", "--no-default-keep"]),
    ("data-free, no keep, int8-g64", ["--no-calibration", "--no-default-keep", "--quant", "int8-g64"]),
    ("calibrated + smoothing α 0.5 (new default)", []),
    ("calibrated + smoothing α 0.8", ["--smoothing-alpha", "0.8"]),
]
VARIANTS = ["demo", "outlier-s30", "outlier-s100", "outlier-s300", "outlier-s3000"]
KERNELS = ["weight-only", "w8a8"]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout


def peer_results(variant, source, prompts, work, max_new_tokens=32):
    """CTranslate2 int8 and torch dynamic int8 against transformers' float32 model: teacher-forced top-1 and
    mean KL(float ‖ peer) over the float model's greedy continuation, and greedy exact match."""
    import numpy as np
    import torch
    import ctranslate2
    import transformers
    from transformers import T5ForConditionalGeneration, T5Tokenizer
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(2)
    tok = T5Tokenizer(vocab_file=f"{source}/spiece.model", legacy=True)
    ref = T5ForConditionalGeneration.from_pretrained(source, torch_dtype=torch.float32).eval()
    dynamic = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ref), {torch.nn.Linear}, dtype=torch.qint8)
    ct2_dir = f"{work}/{variant}-ct2-int8"
    ctranslate2.converters.TransformersConverter(source).convert(ct2_dir, quantization="int8", force=True)
    translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type="int8", intra_threads=2)
    eos = ref.config.eos_token_id
    sums = {name: dict(hits=0, steps=0, kl=0.0, exact=0) for name in ("CTranslate2 int8", "torch dynamic int8")}

    def add(name, reference, candidate):
        n = min(len(reference), len(candidate))
        r, c = reference[:n].double(), candidate[:n].double()
        sums[name]["hits"] += int((r.argmax(-1) == c.argmax(-1)).sum())
        sums[name]["steps"] += n
        lr, lc = torch.log_softmax(r, -1), torch.log_softmax(c, -1)
        sums[name]["kl"] += float((lr.exp() * (lr - lc)).sum(-1).sum())

    for prompt in prompts:
        ids = tok(prompt).input_ids
        x = torch.tensor([ids])
        with torch.no_grad():
            greedy = ref.generate(x, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)[0].tolist()
            decoder_inputs = torch.tensor([greedy[:-1]])
            reference = ref(input_ids=x, decoder_input_ids=decoder_inputs).logits[0]
            add("torch dynamic int8", reference, dynamic(input_ids=x, decoder_input_ids=decoder_inputs).logits[0])
            dyn_greedy = dynamic.generate(x, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)[0].tolist()
        sums["torch dynamic int8"]["exact"] += int(dyn_greedy == greedy)
        source_tokens = tok.convert_ids_to_tokens(ids)
        prefix = tok.convert_ids_to_tokens(greedy[1:-1])
        # min_decoding_length 0: CTranslate2 otherwise masks EOS at the first step (-FLT_MAX), which
        # transformers' model does not do.
        forced = translator.translate_batch([source_tokens], target_prefix=[prefix or None], beam_size=1,
                                            max_decoding_length=len(prefix) + 1, min_decoding_length=0,
                                            return_logits_vocab=True)
        add("CTranslate2 int8", reference, torch.tensor(np.asarray(forced[0].logits[0])))
        free = translator.translate_batch([source_tokens], beam_size=1, max_decoding_length=max_new_tokens,
                                          min_decoding_length=0)
        generated = tok.convert_tokens_to_ids(free[0].hypotheses[0])
        expected = greedy[1:-1] if greedy[-1] == eos else greedy[1:]
        sums["CTranslate2 int8"]["exact"] += int(generated == expected)
    return [dict(variant=variant, recipe=name, kernels="int8", bytes=None, kept_float=None,
                 top1=s["hits"] / max(1, s["steps"]), exact=s["exact"] / len(prompts), mean_kl=s["kl"] / max(1, s["steps"]))
            for name, s in sums.items()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flint", default=str(REPO / ".build/release/flint"))
    p.add_argument("--folders", default="/tmp/outliers")
    p.add_argument("--work", default="/tmp/outlier-recipes")
    p.add_argument("--json")
    p.add_argument("--no-peers", action="store_true", help="skip the CTranslate2 and torch dynamic int8 rows")
    p.add_argument("--reuse", help="take the flint rows from this earlier --json output instead of running flint")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    prompts = str(TOOLS / "outlier-prompts.txt")
    prompt_list = [l for l in Path(prompts).read_text(encoding="utf-8").splitlines() if l.strip()]
    results = []
    reused = [r for r in json.loads(Path(a.reuse).read_text()) if r["kernels"] != "int8"] if a.reuse else None
    for variant in VARIANTS:
        source = str(REPO / "Tests/Fixtures/models/demo") if variant == "demo" else f"{a.folders}/{variant}"
        if reused is not None:
            results += [r for r in reused if r["variant"] == variant]
        for i, (recipe, flags) in enumerate(RECIPES if reused is None else []):
            out = f"{a.work}/{variant}-{i}.flint"
            conv = json.loads(run([a.flint, "convert", source, "-o", out, "--force", "--json", *flags]))
            for kernels in KERNELS:
                v = json.loads(run([a.flint, "verify", out, "--reference", source, "--prompts", prompts,
                                    "--max-tokens", "32", "--kernels", kernels, "--sensitivity", "never", "--json"]))
                results.append(dict(variant=variant, recipe=recipe, kernels=kernels, bytes=conv["bytes_out"],
                                    kept_float=len(conv["kept_float"]), top1=v["top1_agreement"],
                                    exact=v["exact_match"], mean_kl=v["mean_kl"]))
                print(f"{variant:13} {recipe:45} {kernels:11} {v['top1_agreement']:.3f} / {v['exact_match']:.2f} / "
                      f"{v['mean_kl']:.3g}", file=sys.stderr)
        if not a.no_peers:
            for r in peer_results(variant, source, prompt_list, a.work):
                results.append(r)
                print(f"{variant:13} {r['recipe']:45} {r['kernels']:11} {r['top1']:.3f} / {r['exact']:.2f} / "
                      f"{r['mean_kl']:.3g}", file=sys.stderr)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    print("| recipe | kernels | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    rows = [(recipe, kernels) for recipe, _ in RECIPES for kernels in KERNELS]
    if not a.no_peers:
        rows += [("CTranslate2 int8", "int8"), ("torch dynamic int8", "int8")]
    for recipe, kernels in rows:
        cells = []
        for variant in VARIANTS:
            r = next(r for r in results if r["variant"] == variant and r["recipe"] == recipe and r["kernels"] == kernels)
            cells.append(f"{r['top1']:.3f} / {r['exact']:.2f} / {r['mean_kl']:.2g}")
        print(f"| {recipe} | {kernels} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
