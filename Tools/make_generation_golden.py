#!/usr/bin/env python3
"""Writes Tests/Fixtures/generation/<model>.json: transformers' generate() ids for the generation options
`flint run` exposes (no_repeat_ngram_size, repetition_penalty, min_new_tokens, min_length, bad_words_ids,
suppress_tokens, num_return_sequences, decoder_input_ids as a decoder prefix), each alone and combined, greedy and
beam search, on the existing model fixtures (float32, CPU, eval mode). Sequences are cut after their first eos
(generate() pads shorter ones of an n-best list with pad_token_id); scores are generate()'s sequences_scores.
stop_strings: greedy with StopStringCriteria (what generate(stop_strings=..., tokenizer=...) uses). eos_token_id
lists (a sequence ends at any of them) and another decoder_start_token_id, greedy and beam search.

Also `generation_config_case`: a generation_config.json (4 beams, 12 new tokens, no_repeat_ngram_size 2) and the ids
of `model.generate(**inputs)` with that file beside the weights — what `flint run` must give with no flags; and
`special_ids_config_case`: one whose decoder_start_token_id and eos_token_id list differ from config.json's.
Run with Tools/.venv-hf/bin/python Tools/make_generation_golden.py
"""
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import transformers
from transformers import (AutoModelForSeq2SeqLM, GenerationConfig, StoppingCriteriaList, StopStringCriteria,
                          T5Tokenizer)

from fixture_common import MODELS_DIR, SMALL_SPIECE

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

OUT_DIR = MODELS_DIR.parent / "generation"
MODELS = ["flan-tiny", "t5-tiny", "demo"]
PROMPTS = ["reverse: red apple blue", "The cat <extra_id_0> in the park <extra_id_1>.", "reverse: one two three four five six",
           "summarize: the old man and the young woman walk to the market every morning."]
MAX_NEW_TOKENS = 20
# Everything that could change the search, pinned (as make_model_golden.py does); a setting overrides these.
COMMON = dict(max_new_tokens=MAX_NEW_TOKENS, min_length=0, min_new_tokens=None, repetition_penalty=1.0,
              no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, bad_words_ids=None,
              forced_bos_token_id=None, forced_eos_token_id=None, suppress_tokens=None,
              begin_suppress_tokens=None, num_return_sequences=1, temperature=None, top_k=None, top_p=None,
              diversity_penalty=0.0, num_beam_groups=1, renormalize_logits=False, remove_invalid_values=False,
              exponential_decay_length_penalty=None, sequence_bias=None, max_length=None, do_sample=False,
              num_beams=1, length_penalty=1.0, early_stopping=False)
GENERATION_CONFIG_JSON = {"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "num_beams": 4,
                          "max_new_tokens": 12, "no_repeat_ngram_size": 2}


def trim(ids, eos):
    """A generate() row without the pad_token_id padding: up to and including the first eos (an id or a list of
    ids) after the start."""
    eos = set(eos) if isinstance(eos, list) else {eos}
    ids = list(ids)
    for i in range(1, len(ids)):
        if ids[i] in eos:
            return ids[:i + 1]
    return ids


BAD_WORDS_TEXT = ["apple", "one two"]


def settings_for(greedy, tokenizer):
    """The option settings; bad/suppressed tokens are taken from the plain greedy output of the first prompt so
    they change the result. bad_words_text: the ids `tokenizer(words, add_special_tokens=False)` gives (what
    `flint run --bad-words WORD` uses)."""
    g = greedy[1:]

    def late(i):
        """The i-th generated token, or the last one of a shorter output."""
        return g[min(i, len(g) - 1)]
    return {
        "bad_words_text": dict(bad_words_ids=tokenizer(BAD_WORDS_TEXT, add_special_tokens=False).input_ids),
        "no_repeat_ngram_2": dict(no_repeat_ngram_size=2),
        "no_repeat_ngram_1": dict(no_repeat_ngram_size=1),
        "no_repeat_ngram_3_beam4": dict(no_repeat_ngram_size=3, num_beams=4),
        "repetition_penalty_1.5": dict(repetition_penalty=1.5),
        "repetition_penalty_0.7": dict(repetition_penalty=0.7),
        "repetition_penalty_1.3_beam3": dict(repetition_penalty=1.3, num_beams=3),
        "min_new_tokens_8": dict(min_new_tokens=8),
        "min_new_tokens_6_beam4": dict(min_new_tokens=6, num_beams=4),
        "min_length_7": dict(min_length=7),
        "bad_words": dict(bad_words_ids=[[g[1]], [g[2], g[3]]]),
        "bad_words_beam4": dict(bad_words_ids=[[g[0]], [g[2], g[3]]], num_beams=4),
        "suppress_tokens": dict(suppress_tokens=[g[0], g[1]]),
        "suppress_tokens_beam3": dict(suppress_tokens=[g[0]], num_beams=3),
        "num_return_3_beam4": dict(num_beams=4, num_return_sequences=3),
        "num_return_5_beam5_lp0.6_es": dict(num_beams=5, num_return_sequences=5, length_penalty=0.6, early_stopping=True),
        "combined_beam4": dict(num_beams=4, no_repeat_ngram_size=2, repetition_penalty=1.2, min_new_tokens=3,
                               max_new_tokens=12, bad_words_ids=[[g[2]]], suppress_tokens=[g[0]]),
        "combined_greedy": dict(no_repeat_ngram_size=3, repetition_penalty=1.4, min_new_tokens=5,
                                max_new_tokens=15, suppress_tokens=[g[1]]),
        # Several eos ids: any of them ends a sequence; beam search keeps max(2, 1 + n_eos) x num_beams candidates.
        "eos_list_greedy": dict(eos_token_id=[1, g[3]]),
        "eos_list_beam4": dict(eos_token_id=[1, g[1], late(4)], num_beams=4),
        "eos_list_min_new_5": dict(eos_token_id=[g[0], 1], min_new_tokens=5),
        "eos_list_bad_word_beam3": dict(eos_token_id=[1, g[2]], bad_words_ids=[[g[2]], [late(5)]], num_beams=3),
        # Seven eos ids over 2 beams: the best candidates are mostly eos, so the 16 kept (not 4) decide the search.
        "eos_many_beam2": dict(eos_token_id=[1] + [late(i) for i in range(1, 7)], num_beams=2, min_new_tokens=2),
        "decoder_start_greedy": dict(decoder_start_token_id=g[1]),
        "decoder_start_beam4": dict(decoder_start_token_id=g[0], num_beams=4, eos_token_id=[1, g[2]]),
    }


def generate(model, input_ids, setting, decoder_prefix=None, stop_strings=None, tokenizer=None):
    values = {"decoder_start_token_id": model.config.decoder_start_token_id, "pad_token_id": model.config.pad_token_id,
              "eos_token_id": model.config.eos_token_id, **COMMON, **setting}
    start, eos = values["decoder_start_token_id"], values["eos_token_id"]
    config = GenerationConfig(**values)
    kwargs = {}
    if decoder_prefix is not None:
        kwargs["decoder_input_ids"] = torch.tensor([[start] + decoder_prefix])
    if stop_strings is not None:
        # generate(stop_strings=...) builds this criterion; passed directly (the T5 forward rejects tokenizer=).
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopStringCriteria(tokenizer=tokenizer, stop_strings=stop_strings)])
    with torch.no_grad():
        out = model.generate(input_ids, generation_config=config, return_dict_in_generate=True,
                             output_scores=True, **kwargs)
    result = {"sequences": [trim(s, eos) for s in out.sequences.tolist()]}
    if getattr(out, "sequences_scores", None) is not None:
        result["scores"] = [float(s) for s in out.sequences_scores]
    return result


def golden(name):
    model_dir = MODELS_DIR / name
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    tokenizer = T5Tokenizer(vocab_file=str(SMALL_SPIECE))
    cases = []
    first_greedy = None
    stops = None
    for prompt in PROMPTS:
        input_ids = torch.tensor([tokenizer(prompt).input_ids])
        plain = generate(model, input_ids, {})
        if first_greedy is None:
            first_greedy = plain["sequences"][0]
            settings = settings_for(first_greedy, tokenizer)
        results = {"plain": plain}
        for setting_name, setting in settings.items():
            results[setting_name] = generate(model, input_ids, setting)
        # Decoder prefix: the text's pieces without </s>, after the decoder start token (what generate() does with
        # decoder_input_ids); max_new_tokens counts after the prefix.
        prefix_text = "blue apple"
        prefix = tokenizer(prefix_text, add_special_tokens=False).input_ids
        results["decoder_prefix"] = {**generate(model, input_ids, {}, prefix), "prefix_ids": prefix}
        results["decoder_prefix_beam4"] = {**generate(model, input_ids, dict(num_beams=4, min_new_tokens=2), prefix),
                                           "prefix_ids": prefix}
        # Stop strings (greedy): a piece of the first prompt's plain text that spans a token boundary, and one that
        # never occurs.
        if stops is None:
            text = tokenizer.decode(first_greedy, skip_special_tokens=True)
            stops = [text[3:8], "zzzq"]
        results["stop_strings"] = {**generate(model, input_ids, {}, stop_strings=stops, tokenizer=tokenizer),
                                   "stop_strings": stops}
        cases.append({"prompt": prompt, "input_ids": input_ids[0].tolist(), "results": results})
    for case in cases:
        for setting_name, result in case["results"].items():
            if setting_name not in ("plain",) and result["sequences"][0] == case["results"]["plain"]["sequences"][0] \
                    and "num_return" not in setting_name:
                print(f"  note: {name} {setting_name} on \"{case['prompt'][:20]}\" equals the plain output")

    # generation_config.json beside the weights: generate(**inputs) with no arguments follows it.
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / name
        shutil.copytree(model_dir, folder)

        def configured_cases(generation_config, eos):
            (folder / "generation_config.json").write_text(json.dumps(generation_config, indent=2) + "\n")
            configured = AutoModelForSeq2SeqLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
            cases = []
            for prompt in PROMPTS:
                inputs = tokenizer(prompt, return_tensors="pt")
                with torch.no_grad():
                    out = configured.generate(**inputs)
                cases.append({"prompt": prompt, "ids": trim(out[0].tolist(), eos)})
            return cases

        config_cases = configured_cases(GENERATION_CONFIG_JSON, model.config.eos_token_id)
        # Special ids unlike config.json's: another decoder start, and an eos list with a token the model produces
        # early from that start (so the list ends the first prompt's sequence before the config's eos would).
        start = first_greedy[2]
        probe = generate(model, torch.tensor([tokenizer(PROMPTS[0]).input_ids]),
                         dict(decoder_start_token_id=start, min_new_tokens=1))
        produced = [t for t in probe["sequences"][0][1:] if t != 1]
        special_json = {"decoder_start_token_id": start, "eos_token_id": [1, produced[min(1, len(produced) - 1)]],
                        "pad_token_id": 0, "max_new_tokens": 16, "min_new_tokens": 1}
        special_cases = configured_cases(special_json, special_json["eos_token_id"])
    return {
        "model": name,
        "common": {k: v for k, v in COMMON.items() if v is not None},
        "bad_words_text": BAD_WORDS_TEXT,
        "settings": {**{k: v for k, v in settings_for(first_greedy, tokenizer).items()},
                     "decoder_prefix": {"decoder_prefix_text": "blue apple"},
                     "decoder_prefix_beam4": {"decoder_prefix_text": "blue apple", "num_beams": 4, "min_new_tokens": 2},
                     "stop_strings": {"stop_strings": stops}},
        "cases": cases,
        "generation_config_json": GENERATION_CONFIG_JSON,
        "generation_config_cases": config_cases,
        "special_ids_config_json": special_json,
        "special_ids_config_cases": special_cases,
        "notes": "sequences start with decoder_start_token_id (and the prefix ids, when given) and end at the first "
                 "eos; num_return_sequences gives that many sequences, best first, with their scores",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def main():
    torch.set_num_threads(1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        data = golden(name)
        out = OUT_DIR / f"{name}.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
        assert json.loads(tmp.read_text()) == data
        tmp.replace(out)
        print(f"{name}: {len(data['cases'])} prompts x {len(data['cases'][0]['results'])} settings, "
              f"{out.stat().st_size} bytes; generation_config ids {[c['ids'] for c in data['generation_config_cases']]}")


if __name__ == "__main__":
    main()
