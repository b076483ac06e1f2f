#!/usr/bin/env python3
"""Writes PyTorch `.bin` checkpoints of two model fixtures, as torch itself writes them, plus hand-made malicious
ones, for the Swift PyTorch reader's tests. Run with Tools/.venv-hf/bin/python.

  formats/flan-tiny-bin/          pytorch_model.bin  torch.save(state_dict) (zip format; shared/embed_tokens share
                                                     one storage, lm_head its own: flan-tiny is untied)
  formats/flan-tiny-bin-legacy/   pytorch_model.bin  torch.save(..., _use_new_zipfile_serialization=False)
  formats/flan-tiny-bin-sharded/  pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json
                                                     (save_pretrained(safe_serialization=False, max_shard_size small))
  formats/t5-tiny-bin/            pytorch_model.bin  torch.save(state_dict) of a tied model: shared,
                                                     encoder/decoder.embed_tokens and lm_head view ONE storage
  formats/strided/parameter_*.bin an nn.Parameter (torch._utils._rebuild_parameter), pickle protocols 4 and 5
  formats/strided/strided.bin     views torch.save keeps as they are: a transpose (non-contiguous strides), slices
                                 with storage offsets into one storage, float16/bfloat16, an int64 tensor; and
                                 strided/expected.safetensors, the same tensors made contiguous by torch
  formats/malicious/*.bin         pickles that name os.system / builtins.eval (built byte by byte here and never
                                                     loaded), in the zip and the legacy layout

Each model folder gets the source's config.json and spiece.model. Before a folder is kept, every tensor read back
with torch.load(weights_only=True) must equal the source's model.safetensors bit for bit, so the Swift tests can
compare against the safetensors fixture.
"""
import io
import shutil
import struct
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_common import FIXTURES_DIR, MODELS_DIR  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import T5ForConditionalGeneration  # noqa: E402

OUT = FIXTURES_DIR / "formats"


def staging(name):
    tmp = OUT / (name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def finish(tmp, source, name):
    for f in ("config.json", "spiece.model"):
        shutil.copy(MODELS_DIR / source / f, tmp / f)
    final = OUT / name
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    size = sum(p.stat().st_size for p in final.iterdir())
    print(f"{final.relative_to(FIXTURES_DIR)}: {size} bytes")


def check_against_safetensors(files, source):
    """Every tensor in the .bin files equals the same-named (or tied) tensor of the source's safetensors."""
    reference = load_file(MODELS_DIR / source / "model.safetensors")
    loaded = {}
    for f in files:
        loaded.update(torch.load(f, map_location="cpu", weights_only=True))
    for name, tensor in loaded.items():
        ref_name = name if name in reference else "shared.weight"
        if name not in reference and not (name.endswith("embed_tokens.weight") or name == "lm_head.weight"):
            raise SystemExit(f"{files[0]}: tensor {name} is not in {source}/model.safetensors")
        ref = reference[ref_name]
        if ref.dtype != tensor.dtype or ref.shape != tensor.shape or not torch.equal(ref, tensor):
            raise SystemExit(f"{files[0]}: tensor {name} differs from {source}/model.safetensors[{ref_name}]")
    missing = set(reference) - set(loaded)
    if missing:
        raise SystemExit(f"{files[0]}: tensors of {source}/model.safetensors missing: {sorted(missing)}")


def state_dict(source):
    return T5ForConditionalGeneration.from_pretrained(MODELS_DIR / source).state_dict()


def make_zip(source, name):
    tmp = staging(name)
    sd = state_dict(source)
    torch.save(sd, tmp / "pytorch_model.bin")
    check_against_safetensors([tmp / "pytorch_model.bin"], source)
    finish(tmp, source, name)


def make_legacy(source, name):
    tmp = staging(name)
    torch.save(state_dict(source), tmp / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    check_against_safetensors([tmp / "pytorch_model.bin"], source)
    finish(tmp, source, name)


def make_sharded(source, name):
    tmp = staging(name)
    model = T5ForConditionalGeneration.from_pretrained(MODELS_DIR / source)
    model.save_pretrained(tmp, safe_serialization=False, max_shard_size="200KB")
    (tmp / "generation_config.json").unlink(missing_ok=True)
    shards = sorted(tmp.glob("pytorch_model-*.bin"))
    if len(shards) < 2 or not (tmp / "pytorch_model.bin.index.json").exists():
        raise SystemExit(f"{tmp}: expected several shards and an index, got {[p.name for p in tmp.iterdir()]}")
    check_against_safetensors(shards, source)
    finish(tmp, source, name)


def make_strided():
    tmp = staging("strided")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8 - 1
    tensors = {
        "transposed": base.t(),                        # stride (1, 6)
        "row_slice": base[1:3],                        # storage offset 6, contiguous
        "column_slice": base[:, 2:5],                  # storage offset 2, stride (6, 1): not contiguous
        "half": (base * 3).to(torch.float16),
        "bfloat16": (base * 5).to(torch.bfloat16).t(),
        "int64": torch.arange(5, dtype=torch.int64),
        "base": base,
    }
    torch.save(tensors, tmp / "strided.bin")
    from safetensors.torch import save_file
    save_file({k: v.contiguous().clone() for k, v in tensors.items()}, tmp / "expected.safetensors")
    # An nn.Parameter (state_dict(keep_vars=True) saves these: torch._utils._rebuild_parameter), pickle protocol 4
    # (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL) and 5.
    parameter = torch.nn.Parameter(base[:2].clone())
    torch.save({"parameter": parameter, "transposed": base.t()}, tmp / "parameter_p4.bin", pickle_protocol=4)
    torch.save({"parameter": parameter, "transposed": base.t()}, tmp / "parameter_p5_legacy.bin", pickle_protocol=5,
               _use_new_zipfile_serialization=False)
    save_file({**{k: v.contiguous().clone() for k, v in tensors.items()}, "parameter": parameter.detach().clone()},
              tmp / "expected.safetensors")
    (tmp / "expected.safetensors").chmod(0o644)
    back = torch.load(tmp / "strided.bin", weights_only=True)
    assert back["transposed"].stride() == (1, 6) and back["column_slice"].storage_offset() == 2
    final = OUT / "strided"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


# --- Malicious pickles, assembled opcode by opcode (pickletools names in comments). Never unpickled here. ---

def short_unicode(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE


def evil_state_dict_pickle(module, name, argument, stack_global=False):
    """An OrderedDict whose one entry is the result of calling module.name(argument)."""
    out = b"\x80\x02" if not stack_global else b"\x80\x04"                       # PROTO
    out += b"ccollections\nOrderedDict\n" + b")R"                                  # GLOBAL, EMPTY_TUPLE, REDUCE
    out += b"(" + short_unicode("shared.weight")                                    # MARK, key
    if stack_global:
        out += short_unicode(module) + short_unicode(name) + b"\x93"               # STACK_GLOBAL
    else:
        out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"               # GLOBAL
    out += short_unicode(argument) + b"\x85" + b"R"                                 # TUPLE1, REDUCE
    out += b"u" + b"."                                                              # SETITEMS, STOP
    return out


def torch_zip(pickle_bytes):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/version", b"3\n")
    return buffer.getvalue()


def legacy_file(pickle_bytes):
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."   # LONG1
    version = b"\x80\x02M" + struct.pack("<H", 1001) + b"."                                  # BININT2
    sys_info = b"\x80\x02}(" + short_unicode("protocol_version") + b"M" + struct.pack("<H", 1001) \
        + short_unicode("little_endian") + b"\x88u."                                          # EMPTY_DICT ... NEWTRUE
    keys = b"\x80\x02]."                                                                      # EMPTY_LIST
    return magic + version + sys_info + pickle_bytes + keys


def make_malicious():
    tmp = staging("malicious")
    (tmp / "os_system.bin").write_bytes(torch_zip(evil_state_dict_pickle("os", "system", "echo pwned")))
    (tmp / "builtins_eval.bin").write_bytes(
        torch_zip(evil_state_dict_pickle("builtins", "eval", "print('pwned')", stack_global=True)))
    (tmp / "legacy_os_system.bin").write_bytes(legacy_file(evil_state_dict_pickle("os", "system", "echo pwned")))
    final = OUT / "malicious"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    print(f"formats/malicious: {sorted(p.name for p in final.iterdir())}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    make_zip("flan-tiny", "flan-tiny-bin")
    make_legacy("flan-tiny", "flan-tiny-bin-legacy")
    make_sharded("flan-tiny", "flan-tiny-bin-sharded")
    make_zip("t5-tiny", "t5-tiny-bin")
    make_strided()
    make_malicious()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file()
                and p.relative_to(OUT).parts[0] in
                ("flan-tiny-bin", "flan-tiny-bin-legacy", "flan-tiny-bin-sharded", "t5-tiny-bin", "strided", "malicious"))
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
