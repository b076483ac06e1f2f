#!/usr/bin/env python3
"""Re-saves two model fixtures as TensorFlow and Flax checkpoints, so the checkpoint readers can be tested against
files that the real libraries wrote. Needs TensorFlow and Flax: run with Tools/.venv-tf/bin/python.

  formats/flan-tiny-h5/       tf_model.h5         (TFT5ForConditionalGeneration.from_pretrained(from_pt=True))
  formats/flan-tiny-msgpack/  flax_model.msgpack  (FlaxT5ForConditionalGeneration.from_pretrained(from_pt=True))
  formats/t5-tiny-h5/         tf_model.h5         (tied embeddings: no lm_head)
(PyTorch .bin copies of the same weights are made by make_pytorch_fixtures.py.)

Every folder gets config.json, generation_config.json, spiece.model and same_weights_as.json ({"source": ...}),
written only after checking that the weights read back (by transformers, into PyTorch) are bit-identical to the
source's: a reader test can compare tensor by tensor against models/<source>/model.safetensors, and the source's
golden.json holds for these files too (not copied, to stay inside the fixture size budget).
"""
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF models need Keras 2 (tf-keras)
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (FlaxT5ForConditionalGeneration, T5ForConditionalGeneration,  # noqa: E402
                          TFT5ForConditionalGeneration)

from fixture_common import FIXTURES_DIR, MODELS_DIR  # noqa: E402

OUT = FIXTURES_DIR / "formats"

transformers.logging.set_verbosity_error()


def reference_state(source):
    model = T5ForConditionalGeneration.from_pretrained(MODELS_DIR / source).eval()
    return model.state_dict()


def check_same_weights(folder, reference, via=None):
    """Reads the saved checkpoint back into a PyTorch model and compares every tensor bit for bit.
    (transformers 4.57's from_pretrained(from_tf=True / from_flax=True) leaves the PyTorch model on the meta
    device, so TF/Flax files are read by their own class and converted with transformers' pt utilities.)"""
    if via is None:
        loaded = T5ForConditionalGeneration.from_pretrained(folder).eval().state_dict()
    else:
        config = transformers.AutoConfig.from_pretrained(folder)
        torch.manual_seed(12345)
        pt_model = T5ForConditionalGeneration(config).eval()
        if via == "tf":
            from transformers.modeling_tf_pytorch_utils import load_tf2_model_in_pytorch_model
            tf_model = TFT5ForConditionalGeneration.from_pretrained(folder)
            pt_model = load_tf2_model_in_pytorch_model(pt_model, tf_model)
        else:
            from transformers.modeling_flax_pytorch_utils import load_flax_weights_in_pytorch_model
            flax_model = FlaxT5ForConditionalGeneration.from_pretrained(folder)
            pt_model = load_flax_weights_in_pytorch_model(pt_model, flax_model.params)
        loaded = pt_model.state_dict()
    assert set(loaded) == set(reference), set(loaded) ^ set(reference)
    for name, tensor in reference.items():
        assert torch.equal(loaded[name], tensor), f"{folder}: {name} differs after the round trip"


def finish(tmp, source, name):
    shutil.copy(MODELS_DIR / source / "spiece.model", tmp / "spiece.model")
    (tmp / "same_weights_as.json").write_text(json.dumps({
        "source": source,
        "check": "every tensor of the PyTorch state dict read back by transformers equals the source's "
                 "(torch.equal), so models/" + source + "/golden.json applies",
        "written_by": f"transformers {transformers.__version__}, torch {torch.__version__}",
    }, indent=1) + "\n")
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    for f in out.iterdir():
        f.chmod(0o644)
    print(f"{name}: " + ", ".join(f"{f.name} {f.stat().st_size}" for f in sorted(out.iterdir())))


def staging(name):
    tmp = OUT / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def make_h5(source, name):
    tmp = staging(name)
    TFT5ForConditionalGeneration.from_pretrained(MODELS_DIR / source, from_pt=True).save_pretrained(tmp)
    check_same_weights(tmp, reference_state(source), via="tf")
    finish(tmp, source, name)


def make_msgpack(source, name):
    tmp = staging(name)
    FlaxT5ForConditionalGeneration.from_pretrained(MODELS_DIR / source, from_pt=True).save_pretrained(tmp)
    check_same_weights(tmp, reference_state(source), via="flax")
    finish(tmp, source, name)


if __name__ == "__main__":
    torch.set_num_threads(1)
    make_h5("flan-tiny", "flan-tiny-h5")
    make_msgpack("flan-tiny", "flan-tiny-msgpack")
    make_h5("t5-tiny", "t5-tiny-h5")
