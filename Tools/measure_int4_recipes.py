#!/usr/bin/env python3
"""The int4 quality table of issue 15: int4 recipes × the trained demo and its outlier variants, measured with
`flint verify --json` against the float model (teacher-forced top-1 / greedy exact match / mean KL) on the 40
reverse prompts of Tools/outlier-prompts.txt, 32 new tokens, with the kernels `flint run` picks (auto: W4A8 for
int4 files), next to the int8 default and the file size of each.

  Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py --folders /tmp/outliers
  swift build -c release --product flint
  Tools/.venv-hf/bin/python Tools/measure_int4_recipes.py --flint .build/release/flint --folders /tmp/outliers

Prints a Markdown table (and --json FILE writes the raw numbers). Variants whose folder is missing are skipped
with a note (the demo is committed). The search row is `--quant int4-g32 --target-top1 0.99`, scored by the
search on the calibration prompts; its extra bytes are what `flint convert --json` reports.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
RECIPES = [
    ("int8 (default recipe)", []),
    ("int4-g32 (default int4 recipe)", ["--quant", "int4-g32"]),
    ("int4-g64", ["--quant", "int4-g64"]),
    ("int4-g128", ["--quant", "int4-g128"]),
    # The search scores on its calibration prompts: the demo task's own (Tools/demo-prompts.txt, disjoint from
    # the 40 verify prompts), since the built-in set is out of the demo model's domain.
    ("int4-g32 --target-top1 0.99", ["--quant", "int4-g32", "--target-top1", "0.99",
                                     "--calibration", str(TOOLS / "demo-prompts.txt")]),
]
VARIANTS = ["demo", "outlier-s30", "outlier-s100", "outlier-s300", "outlier-s3000", "outlier-block", "outlier-head"]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flint", default=str(REPO / ".build/release/flint"))
    p.add_argument("--folders", default="/tmp/outliers")
    p.add_argument("--work", default="/tmp/int4-recipes")
    p.add_argument("--json")
    p.add_argument("--prompts", default=str(TOOLS / "outlier-prompts.txt"),
                   help="verify prompts (default: the demo task's 40 reverse prompts); 'built-in' for flint's own set")
    p.add_argument("--recipes", help="comma-separated indices of the recipes to run (default: all)")
    p.add_argument("--variants", help="comma-separated variants (default: all whose folder exists)")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    prompt_flags = [] if a.prompts == "built-in" else ["--prompts", a.prompts]
    chosen = [RECIPES[int(i)] for i in a.recipes.split(",")] if a.recipes else RECIPES
    results = []
    variants = []
    for variant in (a.variants.split(",") if a.variants else VARIANTS):
        source = str(REPO / "Tests/Fixtures/models/demo") if variant == "demo" else f"{a.folders}/{variant}"
        if not os.path.isdir(source):
            print(f"skipping {variant}: {source} does not exist (Tools/make_outlier_fixtures.py)", file=sys.stderr)
            continue
        variants.append(variant)
        for i, (recipe, flags) in enumerate(chosen):
            out = f"{a.work}/{variant}-{i}.flint"
            conv = json.loads(run([a.flint, "convert", source, "-o", out, "--force", "--json", *flags]))
            v = json.loads(run([a.flint, "verify", out, "--reference", source, *prompt_flags,
                                "--max-tokens", "32", "--sensitivity", "never", "--json"]))
            search = conv.get("search") or {}
            extra = sum(c.get("bytes", 0) for c in search.get("changes", []))
            results.append(dict(variant=variant, recipe=recipe, bytes=conv["bytes_out"], search_bytes=extra,
                                search_changes=len(search.get("changes", [])), top1=v["top1_agreement"],
                                exact=v["exact_match"], mean_kl=v["mean_kl"]))
            print(f"{variant:13} {recipe:34} {conv['bytes_out']:>10} B  {v['top1_agreement']:.3f} / "
                  f"{v['exact_match']:.2f} / {v['mean_kl']:.3g}", file=sys.stderr)
            os.remove(out)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    print("| recipe | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for recipe, _ in chosen:
        cells = []
        for variant in variants:
            r = next(r for r in results if r["variant"] == variant and r["recipe"] == recipe)
            extra = f", +{r['search_bytes'] / 1024:.0f} kB in {r['search_changes']} changes" if r["search_changes"] else ""
            cells.append(f"{r['top1']:.3f} / {r['exact']:.2f} / {r['mean_kl']:.2g} ({r['bytes'] / 1e6:.2f} MB{extra})")
        print(f"| {recipe} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
