#!/usr/bin/env python3
"""Writes the ByT5 fixtures (transformers' ByT5Tokenizer: UTF-8 bytes + 3, no vocabulary file), with transformers'
own classes and goldens from them:

  tokenizer/folders/byt5-legacy/   tokenizer_config.json + special_tokens_map.json as google/byt5-small ships them
                                   (extra_ids 125 and the 125 sentinels listed, no added_tokens_decoder), and a
                                   config.json naming tokenizer_class ByT5Tokenizer
  tokenizer/folders/byt5-saved/    ByT5Tokenizer().save_pretrained (added_tokens_decoder, added_tokens.json)
  tokenizer/folders/byt5-custom/   ByT5Tokenizer(extra_ids=0, additional_special_tokens=["<sep>", "<cls>"]) with a
                                   non-special added token "<x>" and clean_up_tokenization_spaces true, saved
  tokenizer/folders/byt5-config/   only a config.json with tokenizer_class ByT5Tokenizer (AutoTokenizer then builds
                                   the default ByT5Tokenizer)
  tokenizer/folder-byt5.json       AutoTokenizer.from_pretrained(folder) for byt5-legacy, byt5-saved and byt5-config
                                   (the script checks the three agree on every case): ids, pieces (tokenize), decodes
                                   with and without special tokens, for the texts of make_tokenizer_golden.py up to 400
                                   UTF-8 bytes plus ByT5 cases, and id lists with invalid UTF-8 (decode drops it:
                                   errors="ignore")
  tokenizer/folder-byt5-custom.json  the same for byt5-custom
  models/byt5-tiny/                T5ForConditionalGeneration, vocab_size 384 like google/byt5-*, gated-gelu untied,
                                   tokenizer files as byt5-legacy; golden.json via make_model_golden.golden_encoder_decoder
                                   with AutoTokenizer
Run with Tools/.venv-hf/bin/python Tools/make_byt5_fixtures.py
"""
import json
import random
import shutil
import warnings

import tokenizers
import transformers
from transformers import AutoTokenizer, ByT5Tokenizer, T5ForConditionalGeneration

from fixture_common import MODELS_DIR, TOKENIZER_GOLDEN_DIR
from make_model_fixtures import make_model, save
from make_tokenizer_golden import case_texts

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

FOLDERS_DIR = TOKENIZER_GOLDEN_DIR / "folders"
SENTINELS = [f"<extra_id_{i}>" for i in range(125)]
# What google/byt5-small's tokenizer files say (no added_tokens_decoder: written before transformers 4.34).
LEGACY_TOKENIZER_CONFIG = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 125,
                           "additional_special_tokens": SENTINELS}
LEGACY_SPECIAL_MAP = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                      "additional_special_tokens": SENTINELS}
TOKENIZER_CLASS_CONFIG = {"model_type": "t5", "tokenizer_class": "ByT5Tokenizer"}


def byt5_texts():
    return [
        "hi </s> there", "x</s>", "</s>", "</s></s>", "a <extra_id_0> b", "<extra_id_0><extra_id_1>",
        "<extra_id_124> end", "<extra_id_125> is not a token", "x<pad>y", "  <unk>  z", "<pad>", "ünï 😀",
        "\u0000nul", "e\u0301 combining", "\ufeffbom", "\U0010ffff max", "<sep> a <cls>", "a<x>b", "a <x> b",
        "hello , world .", "Ünïcödé «ταБЬℓσ»: 1<2 & 4+1>3, now 20% off!",
    ]


def decode_id_lists(tokenizer):
    n = len(tokenizer)
    b = lambda *bs: [x + 3 for x in bs]
    lists = [
        [], [0], [1], [2], [0, 1], [3], [258],
        b(0x68, 0x69) + [1],
        b(0xC3, 0xA9),                   # é
        b(0xC3),                         # truncated 2-byte sequence
        b(0xA9, 0x41),                   # lone continuation byte
        b(0xE2, 0x82) + b(0x41),         # truncated 3-byte sequence, then A
        b(0xF0, 0x9F, 0x98, 0x80),       # 😀
        b(0xF0, 0x9F, 0x98) + [1],       # truncated 4-byte sequence before </s>
        b(0xC0, 0x80, 0x41),             # overlong NUL
        b(0xE0, 0x80, 0x80, 0x42),       # overlong 3-byte
        b(0xED, 0xA0, 0x80, 0x43),       # UTF-16 surrogate
        b(0xF4, 0x90, 0x80, 0x80, 0x44), # beyond U+10FFFF
        b(0xF8, 0x88, 0x80, 0x80, 0x80), # 5-byte form
        b(0xFF, 0xFE, 0x45),
        b(0xC3) + [259] + b(0xA9),       # a sentinel splits a 2-byte sequence
        b(0xC3) + [1] + b(0xA9),         # </s> in the middle of one
        b(0x20, 0x61, 0x20) + [1, 0, 2],
        [259, 260, 1], b(0x61) + [259] + b(0x62) + [260],
        b(0x68, 0x65, 0x6C, 0x6C, 0x6F, 0x20, 0x2C, 0x20, 0x77, 0x2E),  # "hello , w." (clean-up spaces)
    ]
    rng = random.Random(5)
    for _ in range(30):
        lists.append([rng.randrange(n) for _ in range(rng.randint(1, 24))])
    for _ in range(10):
        lists.append([rng.choice([rng.randrange(3, 259), rng.randrange(0x80 + 3, 259)]) for _ in range(rng.randint(1, 16))])
    return lists


def fresh(name):
    d = FOLDERS_DIR / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_folders():
    d = fresh("byt5-legacy")
    write_json(d / "tokenizer_config.json", LEGACY_TOKENIZER_CONFIG)
    write_json(d / "special_tokens_map.json", LEGACY_SPECIAL_MAP)
    write_json(d / "config.json", TOKENIZER_CLASS_CONFIG)

    d = fresh("byt5-saved")
    ByT5Tokenizer().save_pretrained(d)

    d = fresh("byt5-custom")
    custom = ByT5Tokenizer(extra_ids=0, additional_special_tokens=["<sep>", "<cls>"], clean_up_tokenization_spaces=True)
    custom.add_tokens(["<x>"])
    custom.save_pretrained(d)

    d = fresh("byt5-config")
    write_json(d / "config.json", TOKENIZER_CLASS_CONFIG)


def golden_for(folder):
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert type(tokenizer).__name__ == "ByT5Tokenizer", type(tokenizer)
    texts = [t for t in case_texts() if len(t.encode("utf-8")) <= 400]
    texts += [t for t in byt5_texts() if t not in texts]
    cases = []
    for text in texts:
        ids = tokenizer(text).input_ids
        cases.append({"text": text, "ids": ids, "pieces": tokenizer.tokenize(text),
                      "decoded": tokenizer.decode(ids),
                      "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True)})
    decode_cases = [{"ids": ids, "decoded": tokenizer.decode(ids),
                     "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True)}
                    for ids in decode_id_lists(tokenizer)]
    return tokenizer, cases, decode_cases


def build_golden(name, folders):
    tokenizer, cases, decode_cases = golden_for(FOLDERS_DIR / folders[0])
    for other in folders[1:]:
        same = golden_for(FOLDERS_DIR / other)
        assert (len(same[0]), same[1], same[2]) == (len(tokenizer), cases, decode_cases), other
    golden = {
        "folders": folders,
        "tokenizer_file": "ByT5Tokenizer",
        "tokenizer_len": len(tokenizer),
        "generator": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                      "tokenizer": type(tokenizer).__name__},
        "cases": cases,
        "decode_cases": decode_cases,
    }
    out = TOKENIZER_GOLDEN_DIR / f"folder-{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{name}: len {len(tokenizer)}, {len(cases)} cases, {len(decode_cases)} decode cases -> {out}")


def make_model_fixture():
    # google/byt5-small: vocab_size 384 = 3 specials + 256 bytes + 125 sentinels, gated-gelu, untied.
    model = make_model(T5ForConditionalGeneration, seed=708, vocab_size=384, d_model=16, d_kv=4, num_heads=4,
                       d_ff=32, num_layers=2, num_decoder_layers=2, feed_forward_proj="gated-gelu",
                       tie_word_embeddings=False)
    model.config.tokenizer_class = "ByT5Tokenizer"
    out = save(model, "byt5-tiny", None)
    write_json(out / "tokenizer_config.json", LEGACY_TOKENIZER_CONFIG)
    write_json(out / "special_tokens_map.json", LEGACY_SPECIAL_MAP)


if __name__ == "__main__":
    make_folders()
    build_golden("byt5", ["byt5-legacy", "byt5-saved", "byt5-config"])
    build_golden("byt5-custom", ["byt5-custom"])
    make_model_fixture()
