#!/usr/bin/env python3
"""Writes Tests/Fixtures/models/<name>/golden.json for every model fixture, computed by transformers in float32,
eval mode, on CPU.

Encoder-decoder models, per prompt: input_ids (T5Tokenizer, with </s>), encoder_last_hidden_state [seq][d_model],
first_logits (decoder input = [decoder_start_token_id], full vocab_size), greedy_ids, beam4_ids, beam4_es_ids
(full generate() output incl. the leading decoder start id) with their sequences_scores (beam4_score,
beam4_es_score), "beams": {setting: {ids, score}} for the further BEAM_SETTINGS (3 and 5 beams, length
penalties 0.5 / 1.5 / 2.0, early stopping on and off), and greedy_text (decode, skip_special_tokens).
flan-tiny also gets step_logits: the raw logits of the first 3 greedy steps for the first two prompts; flan-long
for every prompt (one of them is LONG_INPUT, >= 300 tokens); umt5-tiny (UMT5ForConditionalGeneration) for its long
prompt (the fixture size budget).
flan-tiny-f16 / -bf16: the half-precision checkpoint loaded into float32 (what Flint does: widen once at load), a
few prompts, tokenized with the small vocabulary (their folders carry no spiece.model).
t5-encoder: input_ids and encoder_last_hidden_state only.
Floats are written as the exact double value of each float32 (Python repr), so parsing gives the float back.
Run with Tools/.venv-hf/bin/python Tools/make_model_golden.py [names...]
"""
import json
import random
import sys
import warnings

import torch
import transformers
from transformers import (AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, T5EncoderModel, T5Tokenizer)

from fixture_common import DEMO_WORDS, MODELS_DIR, SMALL_SPIECE

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

LONG_SMALL_PROMPT = ("summarize: The old man and the young woman walk to the market every morning. "
                     "They buy bread, milk, rice and fish, and then they sit near the river to eat. "
                     "The sun is hot, the sky is blue and the birds sing in the green trees. "
                     "After that they go home, read a book, write a letter and sleep. "
                     "Their dog and their cat play in the garden until the evening.")
SMALL_VOCAB_PROMPTS = [
    "reverse: red apple blue",
    "reverse: sun moon star rain",
    "",
    "<extra_id_0>",
    "The cat <extra_id_0> in the park <extra_id_1>.",
    LONG_SMALL_PROMPT,
]

def long_input():
    """A deterministic text of >= 300 small-vocabulary tokens (sentences of DEMO_WORDS in a seeded order)."""
    rng = random.Random(17)
    words = list(DEMO_WORDS)
    sentences = []
    while len(" ".join(sentences).split()) < 260:
        rng.shuffle(words)
        sentences.append("The " + " ".join(words[:rng.randint(6, 12)]) + ".")
    return "summarize: " + " ".join(sentences)


LONG_INPUT = long_input()
FLAN_LONG_PROMPTS = ["reverse: red apple blue", "<extra_id_0>", LONG_SMALL_PROMPT, LONG_INPUT]
HALF_PROMPTS = ["reverse: red apple blue", "The cat <extra_id_0> in the park <extra_id_1>.", LONG_SMALL_PROMPT]
# ByT5 (one id per UTF-8 byte): multi-byte characters, a sentinel, a literal </s>; the long prompt is ~190 bytes.
BYT5_PROMPTS = ["reverse: red apple blue", "Ünïcödé 😀 <extra_id_0> café", "x</s>", LONG_SMALL_PROMPT[:190]]
# The demo model was trained on word reversal: extra prompts whose right answer a person can see.
DEMO_EXTRA_PROMPTS = ["reverse: one two three four five six", "reverse: cat dog"]
T5_VOCAB_PROMPTS = [
    "translate English to German: The house is wonderful.",
    "The <extra_id_0> walks in <extra_id_1> park",
    "summarize: studies have shown that owning a dog is good for you",
]
MAX_NEW_TOKENS = 20
GREEDY = dict(do_sample=False, num_beams=1)
BEAM4 = dict(do_sample=False, num_beams=4, length_penalty=1.0, early_stopping=False)
BEAM4_ES = dict(do_sample=False, num_beams=4, length_penalty=0.6, early_stopping=True)
# Further beam settings: other beam counts, length penalties below and above 1, early stopping both ways.
BEAM_SETTINGS = {
    "beam3": dict(do_sample=False, num_beams=3, length_penalty=1.0, early_stopping=False),
    "beam5_lp2": dict(do_sample=False, num_beams=5, length_penalty=2.0, early_stopping=False),
    "beam3_es_lp0.5": dict(do_sample=False, num_beams=3, length_penalty=0.5, early_stopping=True),
    "beam5_es_lp1.5": dict(do_sample=False, num_beams=5, length_penalty=1.5, early_stopping=True),
}
# Everything that could change the search, pinned explicitly rather than taken from defaults.
COMMON = dict(max_new_tokens=MAX_NEW_TOKENS, min_length=0, min_new_tokens=None, repetition_penalty=1.0,
              no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, bad_words_ids=None,
              forced_bos_token_id=None, forced_eos_token_id=None, suppress_tokens=None,
              begin_suppress_tokens=None, num_return_sequences=1, temperature=None, top_k=None, top_p=None,
              diversity_penalty=0.0, num_beam_groups=1, renormalize_logits=False, remove_invalid_values=False,
              exponential_decay_length_penalty=None, sequence_bias=None, max_length=None)


def floats(tensor):
    """Nested lists of Python floats: each float32 widened exactly to a double, written with repr."""
    return tensor.detach().to(torch.float32).double().tolist()


def generation_config(model, settings):
    return GenerationConfig(decoder_start_token_id=model.config.decoder_start_token_id,
                            pad_token_id=model.config.pad_token_id, eos_token_id=model.config.eos_token_id,
                            **COMMON, **settings)


def check_model_generation_config(model_dir):
    """The saved generation_config.json must not add forced tokens, penalties or a minimum length."""
    path = model_dir / "generation_config.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    allowed = {"_from_model_config", "decoder_start_token_id", "eos_token_id", "pad_token_id", "transformers_version"}
    assert set(saved) <= allowed, f"{path}: unexpected generation settings {set(saved) - allowed}"
    return saved


def golden_encoder_decoder(name, model_dir):
    # T5ForConditionalGeneration, or UMT5ForConditionalGeneration for model_type umt5.
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    spiece = model_dir / "spiece.model"
    if not spiece.exists() and (model_dir / "tokenizer_config.json").exists():
        # A folder with tokenizer files but no vocabulary file: ByT5 (byt5-tiny), which AutoTokenizer resolves.
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    else:
        tokenizer = T5Tokenizer(vocab_file=str(spiece if spiece.exists() else SMALL_SPIECE))
    saved_generation = check_model_generation_config(model_dir)
    prompts = T5_VOCAB_PROMPTS if model.config.vocab_size > 30000 else SMALL_VOCAB_PROMPTS
    if name == "demo":
        prompts = prompts + DEMO_EXTRA_PROMPTS
    elif name == "flan-long":
        prompts = FLAN_LONG_PROMPTS
    elif name.startswith("flan-tiny-") and name.endswith("f16"):
        prompts = HALF_PROMPTS
    elif name == "byt5-tiny":
        prompts = BYT5_PROMPTS
    start = model.config.decoder_start_token_id
    cases = []
    for index, prompt in enumerate(prompts):
        input_ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            encoder_out = model.get_encoder()(input_ids=input_ids).last_hidden_state
            first = model(input_ids=input_ids, decoder_input_ids=torch.tensor([[start]])).logits[0, 0]
            greedy = model.generate(input_ids, generation_config=generation_config(model, GREEDY))
            beam4_out = model.generate(input_ids, generation_config=generation_config(model, BEAM4),
                                       return_dict_in_generate=True, output_scores=True)
            beam4_es_out = model.generate(input_ids, generation_config=generation_config(model, BEAM4_ES),
                                          return_dict_in_generate=True, output_scores=True)
            beam4, beam4_es = beam4_out.sequences, beam4_es_out.sequences
            beams = {}
            for setting, options in BEAM_SETTINGS.items():
                out = model.generate(input_ids, generation_config=generation_config(model, options),
                                     return_dict_in_generate=True, output_scores=True)
                beams[setting] = {"ids": out.sequences[0].tolist(), "score": float(out.sequences_scores[0])}
        case = {
            "prompt": prompt,
            "input_ids": input_ids[0].tolist(),
            "encoder_last_hidden_state": floats(encoder_out[0]),
            "first_logits": floats(first),
            "greedy_ids": greedy[0].tolist(),
            "beam4_ids": beam4[0].tolist(),
            "beam4_es_ids": beam4_es[0].tolist(),
            "greedy_text": tokenizer.decode(greedy[0], skip_special_tokens=True),
            # generate()'s sequences_scores[0]: the winning hypothesis' length-penalised log-prob score.
            "beam4_score": float(beam4_out.sequences_scores[0]),
            "beam4_es_score": float(beam4_es_out.sequences_scores[0]),
            "beams": beams,
        }
        # How robust the greedy path is: smallest gap between the best and second-best raw logit per step.
        with torch.no_grad():
            path_logits = model(input_ids=input_ids, decoder_input_ids=greedy[:, :-1]).logits[0]
        top2 = torch.topk(path_logits, 2, dim=-1).values
        case["greedy_min_top2_margin"] = float((top2[:, 0] - top2[:, 1]).min())
        if ((name == "flan-tiny" and index < 2) or name == "flan-long"
                or (name in ("umt5-tiny", "pile-t5-tiny") and prompt == LONG_SMALL_PROMPT)):
            # Raw logits (no processors) of the first 3 greedy decoder steps: teacher-force the greedy prefix.
            prefix = greedy[:, :3]
            with torch.no_grad():
                steps = model(input_ids=input_ids, decoder_input_ids=prefix).logits[0]
            assert steps.shape[0] == min(3, greedy.shape[1])
            case["step_logits"] = floats(steps)
            # The greedy path must agree with the argmax of these logits.
            for i in range(1, prefix.shape[1]):
                assert int(steps[i - 1].argmax()) == int(greedy[0, i])
        assert int(first.argmax()) == int(greedy[0, 1]), "first greedy token is not argmax of first_logits"
        cases.append(case)
    return {
        "model": name,
        "class": type(model).__name__,
        "dtype": "float32",
        "cases": cases,
        "generation": {
            "common": {k: v for k, v in COMMON.items() if v is not None},
            "greedy": GREEDY,
            "beam4": {**BEAM4, "max_new_tokens": MAX_NEW_TOKENS},
            "beam4_es": {**BEAM4_ES, "max_new_tokens": MAX_NEW_TOKENS},
            "beams": {k: {**v, "max_new_tokens": MAX_NEW_TOKENS} for k, v in BEAM_SETTINGS.items()},
            "decoder_start_token_id": start,
            "eos_token_id": model.config.eos_token_id,
            "pad_token_id": model.config.pad_token_id,
            "model_generation_config_json": saved_generation,
            "notes": "sequences include the leading decoder_start_token_id; generation stops at eos "
                     "(beam hypotheses keep their eos) or after max_new_tokens new tokens",
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def golden_encoder(name, model_dir):
    model = T5EncoderModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    tokenizer = T5Tokenizer(vocab_file=str(model_dir / "spiece.model"))
    cases = []
    for prompt in SMALL_VOCAB_PROMPTS:
        input_ids = torch.tensor([tokenizer(prompt).input_ids])
        with torch.no_grad():
            hidden = model(input_ids=input_ids).last_hidden_state
        cases.append({"prompt": prompt, "input_ids": input_ids[0].tolist(),
                      "encoder_last_hidden_state": floats(hidden[0])})
    return {"model": name, "class": "T5EncoderModel", "dtype": "float32", "cases": cases,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def main(names):
    torch.set_num_threads(1)
    if not names:
        names = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").exists())
    for name in names:
        model_dir = MODELS_DIR / name
        config = AutoConfig.from_pretrained(model_dir)
        if config.architectures == ["T5EncoderModel"]:
            golden = golden_encoder(name, model_dir)
        else:
            golden = golden_encoder_decoder(name, model_dir)
        out = model_dir / "golden.json"
        tmp = out.with_suffix(".json.tmp")
        # One case per line keeps the file diffable without blowing it up with indentation.
        text = json.dumps(golden, ensure_ascii=False, separators=(",", ":"))
        tmp.write_text(text + "\n", encoding="utf-8")
        assert json.loads(tmp.read_text()) == golden
        tmp.replace(out)
        summary = [(c["prompt"][:30], c.get("greedy_ids")) for c in golden["cases"][:3]]
        print(f"{name}: {len(golden['cases'])} cases, {out.stat().st_size} bytes; {summary}")


if __name__ == "__main__":
    main(sys.argv[1:])
