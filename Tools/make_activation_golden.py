#!/usr/bin/env python3
"""Writes Tests/Fixtures/activations/golden.json: every parameter-free activation of transformers' ACT2FN (the
names a T5 config's feed_forward_proj / dense_act_fn may give), applied in float32 by transformers' own module
to a fixed set of inputs: {"transformers", "torch", "x": [...], "y": {name: [...]}}. The activations with learned
parameters (prelu, xielu) are left out: Flint refuses them.
Run with Tools/.venv-hf/bin/python Tools/make_activation_golden.py
"""
import json

import torch
import transformers
from transformers.activations import ACT2CLS, ACT2FN

from fixture_common import FIXTURES_DIR

WITH_PARAMETERS = {"prelu", "xielu"}


def inputs():
    grid = torch.linspace(-12, 12, 241, dtype=torch.float64).tolist()
    special = [0.0, -0.0, 1e-7, -1e-7, 1e-3, -1e-3, 0.5, -0.5, 0.707107, 5.999, 6.0, 6.001, 19.9, 20.0, 20.1,
               -19.9, -20.5, 30.0, -30.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4]
    return torch.tensor(grid + special, dtype=torch.float32)


def main():
    x = inputs()
    names = sorted(n for n in ACT2CLS if n not in WITH_PARAMETERS)
    y = {}
    with torch.no_grad():
        for name in names:
            module = ACT2FN[name]
            assert not list(module.parameters()), name
            out = module(x.clone())
            assert out.dtype == torch.float32
            y[name] = out.double().tolist()
    golden = {"transformers": transformers.__version__, "torch": torch.__version__,
              "x": x.double().tolist(), "y": y}
    out = FIXTURES_DIR / "activations" / "golden.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"{len(names)} activations x {len(x)} inputs -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
