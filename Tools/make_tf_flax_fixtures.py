#!/usr/bin/env python3
"""Writes the Keras .h5 and Flax msgpack fixtures that Tools/make_format_fixtures.py does not, so the native
readers are tested against files the real libraries wrote. Run with Tools/.venv-tf/bin/python.

  formats/flan-tiny-h5-sharded/      tf_model-0000k-of-0000n.h5 + tf_model.h5.index.json
                                     (TFT5ForConditionalGeneration.save_pretrained(max_shard_size=...))
  formats/flan-tiny-msgpack-sharded/ flax_model-0000k-of-0000n.msgpack + flax_model.msgpack.index.json
  formats/t5-tiny-msgpack/           flax_model.msgpack of the tied-embedding T5 (no lm_head stored)

The unsharded flan-tiny .h5 / msgpack and t5-tiny .h5 are formats/flan-tiny-h5, formats/flan-tiny-msgpack and
formats/t5-tiny-h5 (Tools/make_format_fixtures.py); they are not duplicated here, to keep the fixtures small.

Each folder gets config.json, spiece.model and same_weights_as.json, and holds only its one weight format. A
folder is written only after the checkpoint, read back by transformers' own TF / Flax class and converted to
PyTorch with transformers' utilities, equals the source's safetensors tensor for tensor (torch.equal): a reader
test can compare every tensor against models/<source>/model.safetensors.
"""
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF models need Keras 2 (tf-keras)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (FlaxT5ForConditionalGeneration, T5ForConditionalGeneration,  # noqa: E402
                          TFT5ForConditionalGeneration)
from transformers.modeling_flax_pytorch_utils import load_flax_weights_in_pytorch_model  # noqa: E402
from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model  # noqa: E402

from fixture_common import FIXTURES_DIR, MODELS_DIR  # noqa: E402

FORMATS_DIR = FIXTURES_DIR / "formats"
transformers.logging.set_verbosity_error()


def reference_state(source):
    return T5ForConditionalGeneration.from_pretrained(MODELS_DIR / source).eval().state_dict()


def read_back(folder, via):
    """The PyTorch state dict transformers makes of the saved checkpoint. (from_pretrained(from_tf=True /
    from_flax=True) in 4.57 leaves the PyTorch model on the meta device, so the TF / Flax class loads the
    files and transformers' pt utilities convert.)"""
    config = transformers.AutoConfig.from_pretrained(folder)
    torch.manual_seed(12345)
    pt_model = T5ForConditionalGeneration(config).eval()
    if via == "tf":
        pt_model = load_tf2_model_in_pytorch_model(pt_model, TFT5ForConditionalGeneration.from_pretrained(folder))
    else:
        pt_model = load_flax_weights_in_pytorch_model(pt_model,
                                                      FlaxT5ForConditionalGeneration.from_pretrained(folder).params)
    return pt_model.state_dict()


def check_same_weights(folder, source, via):
    reference = reference_state(source)
    loaded = read_back(folder, via)
    assert set(loaded) == set(reference), set(loaded) ^ set(reference)
    for name, tensor in reference.items():
        assert torch.equal(loaded[name], tensor), f"{folder}: {name} differs after the round trip"


def write(source, name, via, shard_size=None):
    out = FORMATS_DIR / name
    tmp = FORMATS_DIR / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cls = TFT5ForConditionalGeneration if via == "tf" else FlaxT5ForConditionalGeneration
    model = cls.from_pretrained(MODELS_DIR / source, from_pt=True)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(tmp, **kwargs)
    weight_prefix = "tf_model" if via == "tf" else "flax_model"
    weights = [f.name for f in tmp.iterdir() if f.name.startswith(weight_prefix)]
    if shard_size:
        assert any(w.endswith(".index.json") for w in weights) and len(weights) > 2, weights
    else:
        assert weights == [weight_prefix + (".h5" if via == "tf" else ".msgpack")], weights
    check_same_weights(tmp, source, via)
    shutil.copy(MODELS_DIR / source / "spiece.model", tmp / "spiece.model")
    (tmp / "same_weights_as.json").write_text(json.dumps({
        "source": "models/" + source,
        "check": "every tensor of the PyTorch state dict transformers makes of these files equals the source's "
                 "(torch.equal)",
        "written_by": f"transformers {transformers.__version__}, torch {torch.__version__}",
    }, indent=1) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    for f in out.iterdir():
        f.chmod(0o644)
    print(f"{name}: " + ", ".join(f"{f.name} {f.stat().st_size}" for f in sorted(out.iterdir())))


if __name__ == "__main__":
    torch.set_num_threads(1)
    FORMATS_DIR.mkdir(parents=True, exist_ok=True)
    # flan-tiny's largest tensors (embedding, lm_head) are 176 640 bytes; 200 kB shards give several files.
    write("flan-tiny", "flan-tiny-h5-sharded", "tf", shard_size="200kB")
    write("flan-tiny", "flan-tiny-msgpack-sharded", "flax", shard_size="200kB")
    write("t5-tiny", "t5-tiny-msgpack", "flax")
