#!/usr/bin/env python3
"""The recipe table of issue 9: every conversion recipe × outlier variant × int8 kernels, measured with
`flint verify --json` against the float model (teacher-forced top-1 / greedy exact match / mean KL), on the 40
reverse prompts of Tools/outlier-prompts.txt (the demo model's own task), 32 new tokens.

  Tools/.venv-hf/bin/python Tools/make_outlier_fixtures.py --folders /tmp/outliers
  swift build -c release --product flint
  Tools/.venv-hf/bin/python Tools/measure_outlier_recipes.py --flint .build/release/flint --folders /tmp/outliers

Prints a Markdown table (and --json FILE writes the raw numbers).
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
    ("old default (data-free, wo f32)", ["--no-calibration"]),
    ("data-free, no keep", ["--no-calibration", "--no-default-keep"]),
    ("data-free, no keep, int8-g64", ["--no-calibration", "--no-default-keep", "--quant", "int8-g64"]),
    ("calibrated + smoothing α 0.5 (new default)", []),
    ("calibrated + smoothing α 0.8", ["--smoothing-alpha", "0.8"]),
]
VARIANTS = ["demo", "outlier-s30", "outlier-s100", "outlier-s300"]
KERNELS = ["weight-only", "w8a8"]


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr}")
    return out.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flint", default=str(REPO / ".build/release/flint"))
    p.add_argument("--folders", default="/tmp/outliers")
    p.add_argument("--work", default="/tmp/outlier-recipes")
    p.add_argument("--json")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    prompts = str(TOOLS / "outlier-prompts.txt")
    results = []
    for variant in VARIANTS:
        source = str(REPO / "Tests/Fixtures/models/demo") if variant == "demo" else f"{a.folders}/{variant}"
        for i, (recipe, flags) in enumerate(RECIPES):
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
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    print("| recipe | kernels | " + " | ".join(VARIANTS) + " |")
    print("|---|---|" + "---|" * len(VARIANTS))
    for recipe, _ in RECIPES:
        for kernels in KERNELS:
            cells = []
            for variant in VARIANTS:
                r = next(r for r in results if r["variant"] == variant and r["recipe"] == recipe and r["kernels"] == kernels)
                cells.append(f"{r['top1']:.3f} / {r['exact']:.2f} / {r['mean_kl']:.2g}")
            print(f"| {recipe} | {kernels} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
