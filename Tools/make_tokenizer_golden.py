#!/usr/bin/env python3
"""Writes tokenizer goldens with transformers' slow T5Tokenizer (sentencepiece based, default settings,
legacy=True as from_pretrained gives for t5-small / flan-t5 without a `legacy` key):

  Tests/Fixtures/tokenizer/small.json   for Tests/Fixtures/vocab/small/spiece.model
  Tests/Fixtures/tokenizer/t5.json      for Tests/Fixtures/vocab/t5/spiece.model

Each case: text, ids (= tokenizer(text).input_ids, with </s>), pieces (= tokenizer.tokenize(text)),
decoded (= decode(ids)), decoded_skip_special (= decode(ids, skip_special_tokens=True)).
decode_cases: random id lists (with sentinels, pad, eos, unk) and their two decodes.
Run with Tools/.venv-hf/bin/python Tools/make_tokenizer_golden.py (`... bpe`: only the BPE folders and goldens)
"""
import json
import random
import warnings

from pathlib import Path

import tokenizers
import transformers
from transformers import AddedToken, AutoTokenizer, T5Tokenizer, T5TokenizerFast

from fixture_common import DEMO_WORDS, SMALL_SPIECE, T5_SPIECE, TOKENIZER_GOLDEN_DIR

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


def case_texts():
    texts = [
        "",
        " ",
        "  ",
        "\t",
        "\n",
        " \n\t ",
        "a",
        "A",
        ".",
        "translate English to German: The house is wonderful.",
        "summarize: studies have shown that owning a dog is good for you",
        "The quick brown fox jumps over the lazy dog.",
        "Hello, world!",
        "Hello world",
        "hello  world",
        "hello   world",
        "hello\tworld",
        "hello\nworld",
        "hello\r\nworld",
        "hello \n world",
        " leading space",
        "   leading spaces",
        "trailing space ",
        "trailing spaces   ",
        "  both sides  ",
        "\tleading tab",
        "trailing newline\n",
        "reverse: red apple blue",
        "reverse: one two three four five six",
        "blue apple red",
        "What is the capital of France?",
        "Answer the following question. Who wrote Hamlet?",
        "cola sentence: The course is jumping well.",
        "stsb sentence1: The rhino grazed on the grass. sentence2: A rhino is grazing in a field.",
        "question: What color is the sky? context: The sky is blue on a clear day.",
        "It's a dog's life; isn't it?",
        "\"Quoted text,\" she said.",
        "(parentheses) [brackets] {braces} <angles>",
        "a-b_c.d/e\\f|g",
        "email@example.com https://example.org/path?q=1&r=2#frag",
        "C++ and C# and F# are languages.",
        "50% off!!! $9.99 only... #deal @shop",
        "x = y + 2 * (z - 3) / 4",
        "if (a < b && c > d) { return; }",
        "~`!@#$%^&*()_+-={}[]|:;'<>,.?/",
        "...",
        "!!!",
        "??",
        "--",
        "—",
        "–",
        "…",
        "1",
        "12",
        "123",
        "1234567890",
        "3.14159",
        "1,000,000",
        "-42",
        "1e-6",
        "0.000001",
        "2026-11-25",
        "10:50 UTC",
        "Call 555-1234 now",
        "Version 4.57.6",
        "Room 101, Floor 3",
        "1st 2nd 3rd 4th",
        "½ ¼ ¾",
        "x² + y³",
        "H₂O",
        "①②③",
        "™ © ®",
        "ﬁ ﬂ ligatures",
        "Ⅳ Ⅻ",
        "℃ ℉",
        "café",
        "cafe\u0301",
        "naïve",
        "nai\u0308ve",
        "résumé",
        "re\u0301sume\u0301",
        "Ångström",
        "A\u030angstro\u0308m",
        "Straße",
        "Müller",
        "Mu\u0308ller",
        "façade",
        "El niño",
        "El nin\u0303o",
        "São Paulo",
        "Dvořák",
        "Łódź",
        "Ñandú",
        "ÀÉÎÕÜ",
        "àéîõü",
        "Das Haus ist wunderbar.",
        "La maison est merveilleuse.",
        "Übersetze ins Deutsche: Guten Morgen!",
        "translate English to French: Where is the train station?",
        "translate English to Romanian: Thank you very much.",
        "Mulțumesc foarte mult.",
        "Привет, мир!",
        "Москва — столица России.",
        "Ёлка",
        "Ελληνικά",
        "αβγδε",
        "مرحبا بالعالم",
        "السلام عليكم",
        "שלום עולם",
        "नमस्ते दुनिया",
        "สวัสดีครับ",
        "日本語のテキスト",
        "東京は日本の首都です。",
        "中文测试",
        "你好，世界！",
        "한국어 텍스트",
        "안녕하세요",
        "ｆｕｌｌｗｉｄｔｈ",
        "ＡＢＣ１２３",
        "ＡＢＣ　１２３",
        "Ｈｅｌｌｏ，　ｗｏｒｌｄ！",
        "ｶﾀｶﾅ",
        "カタカナ",
        "　ideographic space",
        "non\u00a0breaking space",
        "zero\u200bwidth",
        "soft\u00adhyphen",
        "thin\u2009space",
        "em\u2003space",
        "line\u2028separator",
        "\u00a0",
        "\u3000",
        "😀",
        "😀😃😄",
        "I love 🍕 and 🍣!",
        "👍🏽",
        "👨‍👩‍👧‍👦",
        "🇩🇪 flag",
        "emoji at end 🎉",
        "❤️",
        "★☆",
        "→ ← ↑ ↓",
        "∑∫√∞≠≤≥",
        "€100 £50 ¥1000",
        "\u0000null",
        "control\u0007bell",
        "\x7f",
        "tab\tseparated\tvalues",
        "multi\n\nline\n\ntext",
        "\n\n\n",
        "\t\t",
        "a\tb\nc d",
        "<extra_id_0>",
        "<extra_id_99>",
        "<extra_id_1>",
        "<extra_id_50>",
        "<extra_id_0><extra_id_1>",
        "<extra_id_0> <extra_id_1>",
        "The <extra_id_0> walks in <extra_id_1> park",
        "The<extra_id_0>walks in<extra_id_1>park",
        "The <extra_id_0>walks",
        "The<extra_id_0> walks",
        "<extra_id_0> cute dog <extra_id_1> the <extra_id_2>",
        " <extra_id_0> ",
        "  <extra_id_0>  ",
        "<extra_id_0>.",
        "end <extra_id_99>",
        "end<extra_id_99>",
        "<extra_id_99> start",
        "<extra_id_99>start",
        "<extra_id_100>",
        "<extra_id_-1>",
        "<extra_id_>",
        "<extra_id_00>",
        "<EXTRA_ID_0>",
        "<extra_id_0",
        "extra_id_0",
        "</s>",
        "<pad>",
        "<unk>",
        "hello </s>",
        "hello</s>",
        "</s> hello",
        "</s>hello",
        "a </s> b",
        "a</s>b",
        "<pad> padded <pad>",
        "<pad><pad>",
        "an <unk> token",
        "an<unk>token",
        "<s>",
        "</S>",
        "< /s>",
        "<unk><extra_id_0></s><pad>",
        "\u2581",
        "\u2581\u2581",
        "▁already▁escaped",
        "▁ hello",
        "under_score",
        "CamelCaseWords",
        "ALL CAPS SENTENCE",
        "MiXeD cAsE",
        "don't won't can't",
        "rock'n'roll",
        "e.g. i.e. etc.",
        "U.S.A.",
        "Mr. Smith went to Washington.",
        "supercalifragilisticexpialidocious",
        "antidisestablishmentarianism",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "abababababababababab",
        "xyzzy qwerty asdf",
        "red red red red",
        "one two three four five six seven eight nine ten",
        "The cat sat on the mat.",
        "A small dog runs fast in the park.",
        "Every good boy does fine.",
        "She sells sea shells by the sea shore.",
        "I can't believe it's not butter!",
        "Is this the real life? Is this just fantasy?",
        "To be, or not to be, that is the question.",
        "The year 1984 was 40 years before 2024.",
        "Temperature: -3.5°C (26.7°F)",
        "Price: $1,234.56 (incl. 19% VAT)",
        "Score 3:2 after 90+4'",
        "#hashtag @mention",
        "<html><body>Hi</body></html>",
        "{\"key\": [1, 2, 3]}",
        "path/to/file.txt",
        "C:\\Windows\\System32",
        "SELECT * FROM t WHERE x = 'y';",
        "def f(x): return x ** 2",
        "α + β = γ",
        "Ω ohm",
        "µ micro",
        "Å angstrom sign",
        "K kelvin sign",
        "ﬀ ﬃ",
        "ǆ ǅ Ǆ",
        "İstanbul",
        "ı dotless",
        "ς σ Σ",
    ]
    rng = random.Random(20261125)
    for n in (3, 5, 8, 12):
        texts.append("reverse: " + " ".join(rng.choice(DEMO_WORDS) for _ in range(n)))
    for _ in range(6):
        texts.append(" ".join(rng.choice(DEMO_WORDS) for _ in range(rng.randint(4, 15))))
    long_sentence = "The quick brown fox jumps over the lazy dog near the river bank. "
    texts.append((long_sentence * 40).strip())  # > 2000 chars
    texts.append(" ".join(rng.choice(DEMO_WORDS) for _ in range(450)))  # > 2000 chars
    mixed = "Hello Привет 你好 مرحبا 😀 <extra_id_5> café 123 ｆｕｌｌ \t\n "
    texts.append(mixed * 50)
    assert len(texts) == len(set(texts)), [t for t in texts if texts.count(t) > 1]
    return texts


def decode_id_lists(tokenizer, spiece_size):
    rng = random.Random(99)
    n = len(tokenizer)
    lists = [
        [],
        [0],
        [1],
        [2],
        [0, 1],
        [0, 0, 1],
        [n - 1],  # <extra_id_0>
        [spiece_size],  # <extra_id_99>
        [n - 1, n - 2, 1],
    ]
    while len(lists) < 22:
        length = rng.randint(1, 25)
        ids = []
        for _ in range(length):
            r = rng.random()
            if r < 0.1:
                ids.append(rng.choice([0, 1, 2]))
            elif r < 0.2:
                ids.append(rng.randint(spiece_size, n - 1))
            else:
                ids.append(rng.randint(3, spiece_size - 1))
        lists.append(ids)
    return lists


def build(name, spiece_path):
    tokenizer = T5Tokenizer(vocab_file=str(spiece_path))
    assert tokenizer.legacy is True  # T5Tokenizer's default when `legacy` is not given
    spiece_size = tokenizer.sp_model.get_piece_size()
    cases = []
    for text in case_texts():
        ids = tokenizer(text).input_ids
        cases.append({
            "text": text,
            "ids": ids,
            "pieces": tokenizer.tokenize(text),
            "decoded": tokenizer.decode(ids),
            "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        })
    decode_cases = [{
        "ids": ids,
        "decoded": tokenizer.decode(ids),
        "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
    } for ids in decode_id_lists(tokenizer, spiece_size)]
    golden = {
        "vocab": name,
        "spiece_size": spiece_size,
        "tokenizer_len": len(tokenizer),
        "generator": {"transformers": transformers.__version__, "tokenizer": "T5Tokenizer (slow)",
                      "legacy": tokenizer.legacy, "extra_ids": 100},
        "cases": cases,
        "decode_cases": decode_cases,
    }
    TOKENIZER_GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    out = TOKENIZER_GOLDEN_DIR / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{name}: {len(cases)} cases, {len(decode_cases)} decode cases -> {out}")


# ---------------------------------------------------------------------------------------------------------
# Folders laid out as Hugging Face repositories ship them, and what AutoTokenizer.from_pretrained gives for each
# (the fast tokenizer when tokenizer.json exists, the slow T5Tokenizer otherwise).

FOLDERS_DIR = TOKENIZER_GOLDEN_DIR / "folders"

# Added tokens of the fine-tune fixtures: non-special with default flags (normalized=True), special, special
# stripping the spaces around it, and a single-word one.
ADDED_TOKENS = [
    AddedToken("<user>", special=False),
    AddedToken("<bot>", special=True),
    AddedToken("<sep>", special=True, lstrip=True, rstrip=True),
    AddedToken("wordy", special=False, single_word=True),
]


def extra_texts():
    """Strings for added tokens, unicode normalisation and whitespace runs (on top of case_texts())."""
    return [
        "<user> hello <bot> hi there",
        "<user>hello<bot>hi",
        "  <user>  hello  <bot>  ",
        "a<sep>b",
        "a <sep> b",
        "a  <sep>  b  <sep>",
        "<sep><sep> <sep>",
        "wordy",
        "a wordy sentence",
        "unwordy wordyness wordy!",
        "wordy<user>wordy",
        "<user><bot><user>",
        "<USER> <Bot>",
        "</s> <pad> <unk> <user>",
        "<extra_id_0> <user> <extra_id_1>",
        "<extra_id_0><sep><extra_id_1>",
        "ﬁne ﬂower ① ² ㎏ ™ ½",
        "cafe\u0301 café",
        "Ａｂｃ　ｄｅｆ",
        "zero\u200bwidth\u200dchars\ufeff",
        "e\u0301\u0302\u0303 stacked",
        "ｶﾀｶﾅ ﾊﾟ",
        "tab\t\tand\n\nnewlines\r\n",
        "many      spaces     here",
        "\u3000ideographic\u3000space",
        "nbsp\u00a0here\u2009thin",
        "trailing    ",
        "    ",
        "\u00a0\u00a0",
        "🧑‍🤝‍🧑 family 👍🏽",
        "한국어 テスト ไทย हिन्दी",
    ]


def make_folders():
    """Writes the fixture folders with transformers' own save_pretrained (and tokenizers for the old layout)."""
    import shutil
    import tempfile
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    FOLDERS_DIR.mkdir(parents=True, exist_ok=True)

    def fresh(name):
        d = FOLDERS_DIR / name
        if d.exists():
            shutil.rmtree(d)
        return d

    def save(tokenizer, name, keep_spiece, prepend_scheme=None):
        d = fresh(name)
        tokenizer.save_pretrained(str(d))
        if not keep_spiece:
            (d / "spiece.model").unlink(missing_ok=True)
        if prepend_scheme:
            # transformers 4.57 converts T5TokenizerFast(add_prefix_space=None) with prepend_scheme "never"; the
            # published T5 / FLAN-T5 tokenizer.json files prepend "▁" (always; "first" for legacy=False).
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=prepend_scheme)
            tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=prepend_scheme)
            tok.save(str(d / "tokenizer.json"), pretty=False)  # compact: keeps Tests/Fixtures small
        return d

    with tempfile.TemporaryDirectory() as tmp:
        # A fine-tune that ships only tokenizer.json: slow T5Tokenizer saved, loaded fast (converted, the way
        # from_pretrained does it for a repo without tokenizer.json), saved, spiece.model dropped.
        for vocab, spiece in (("small", SMALL_SPIECE), ("t5", T5_SPIECE)):
            slow_dir = Path(tmp) / f"slow-{vocab}"
            T5Tokenizer(vocab_file=str(spiece)).save_pretrained(str(slow_dir))
            # add_prefix_space=None: the saved tokenizer_config.json then has no add_prefix_space, as in published
            # repos (with it set, T5TokenizerFast insists on re-converting from spiece.model).
            fast = T5TokenizerFast.from_pretrained(str(slow_dir), add_prefix_space=None)
            save(fast, f"{vocab}-fast", keep_spiece=False, prepend_scheme="always")
        slow_dir = Path(tmp) / "slow-small"

        # legacy=False: Metaspace prepend_scheme "first".
        fast = T5TokenizerFast.from_pretrained(str(slow_dir), legacy=False, from_slow=True, add_prefix_space=None)
        save(fast, "small-fast-first", keep_spiece=False, prepend_scheme="first")

        # The tokenizer.json layout of older published T5 / FLAN-T5 repos: Precompiled + Replace(" {2,}" -> " "),
        # WhitespaceSplit then Metaspace with the old `add_prefix_space` key, Metaspace decoder.
        d = fresh("small-fast-oldjson")
        shutil.copytree(FOLDERS_DIR / "small-fast", d)
        j = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        precompiled = [n for n in j["normalizer"]["normalizers"] if n["type"] == "Precompiled"][0]
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            precompiled, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}]}
        j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
        (d / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False), encoding="utf-8")
        Tokenizer.from_file(str(d / "tokenizer.json"))  # tokenizers accepts the old keys

        # A fine-tune with added tokens, fast (tokenizer.json) and slow (spiece.model + tokenizer_config.json).
        fast = T5TokenizerFast.from_pretrained(str(FOLDERS_DIR / "small-fast"))
        fast.add_tokens(ADDED_TOKENS)
        save(fast, "small-fast-added", keep_spiece=False, prepend_scheme="always")
        slow = T5Tokenizer(vocab_file=str(SMALL_SPIECE))
        slow.add_tokens(ADDED_TOKENS)
        save(slow, "small-slow-added", keep_spiece=True)

        # mT5 as published: extra_ids 0, no sentinels among the added tokens.
        slow = T5Tokenizer(vocab_file=str(SMALL_SPIECE), extra_ids=0)
        d = save(slow, "small-slow-mt5", keep_spiece=True)
        # The configuration files exactly as google/mt5-* publish them (written before added_tokens_decoder).
        (d / "tokenizer_config.json").write_text(json.dumps({
            "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "extra_ids": 0,
            "additional_special_tokens": None, "special_tokens_map_file": None, "tokenizer_file": None,
            "name_or_path": "google/mt5-small"}), encoding="utf-8")
        (d / "special_tokens_map.json").write_text(json.dumps({
            "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}), encoding="utf-8")
        slow_dir = Path(tmp) / "slow-mt5"
        slow.save_pretrained(str(slow_dir))
        fast = T5TokenizerFast.from_pretrained(str(slow_dir), add_prefix_space=None)
        save(fast, "small-fast-mt5", keep_spiece=False, prepend_scheme="always")

        # small-fast was only the base of the two above; t5-fast and small-fast-added cover its layout, and
        # Tests/Fixtures has a size budget.
        shutil.rmtree(FOLDERS_DIR / "small-fast")


def build_folder(name):
    folder = FOLDERS_DIR / name
    has_json = (folder / "tokenizer.json").exists()
    # Without tokenizer.json, AutoTokenizer (use_fast=True) converts spiece.model to a fast tokenizer on the fly;
    # Flint's spiece.model path is transformers' slow T5Tokenizer, so that is what the slow goldens record.
    # RobertaTokenizer's slow files (CodeT5) are converted to the fast tokenizer, which is what AutoTokenizer gives.
    fast = has_json or (folder / "merges.txt").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), use_fast=fast)
    assert tokenizer.is_fast == fast, (name, type(tokenizer))
    texts = case_texts() + extra_texts()
    cases = []
    for text in texts:
        ids = tokenizer(text).input_ids
        cases.append({
            "text": text,
            "ids": ids,
            "pieces": tokenizer.tokenize(text),
            "decoded": tokenizer.decode(ids),
            "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
        })
    rng = random.Random(7)
    n = len(tokenizer)
    id_lists = [[], [0], [1], [2], [n - 1], [0, 1], [n - 1, n - 2, 1]]
    while len(id_lists) < 30:
        id_lists.append([rng.randrange(n) for _ in range(rng.randint(1, 25))])
    decode_cases = [{
        "ids": ids,
        "decoded": tokenizer.decode(ids),
        "decoded_skip_special": tokenizer.decode(ids, skip_special_tokens=True),
    } for ids in id_lists]
    golden = {
        "folder": name,
        "tokenizer_file": "tokenizer.json" if fast else "spiece.model",
        "tokenizer_len": n,
        "generator": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                      "tokenizer": type(tokenizer).__name__},
        "cases": cases,
        "decode_cases": decode_cases,
    }
    out = TOKENIZER_GOLDEN_DIR / f"folder-{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"{name}: {type(tokenizer).__name__}, len {n}, {len(cases)} cases -> {out}")


FOLDER_NAMES = ["t5-fast", "small-fast-first", "small-fast-oldjson", "small-fast-added",
                "small-slow-added", "small-fast-mt5", "small-slow-mt5"]
BPE_FOLDER_NAMES = ["codet5-bpe", "codet5-slow", "codet5-slow-legacy", "codet5-bpe-prefix", "pile-bpe",
                    "pile-bpe-metaspace"]


def bpe_corpus():
    """Training text for the BPE fixtures: the demo words, every golden text, a little code."""
    code = [
        "def add(a, b):\n    return a + b\n",
        "for (int i = 0; i < n; i++) { sum += x[i]; }",
        "public static void main(String[] args) { System.out.println(\"hello\"); }",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)",
        "if x is not None and len(x) > 0:\n        print(x[0])",
        "SELECT name, count(*) FROM users WHERE age >= 18 GROUP BY name;",
    ]
    return [" ".join(DEMO_WORDS)] * 4 + (case_texts() + extra_texts()) * 2 + code * 8


def make_bpe_folders():
    """Two BPE tokenizers trained here with the `tokenizers` library, saved with transformers' save_pretrained and
    kept as tokenizer.json only (what the converter embeds):
      codet5-bpe  byte-level BPE as Salesforce/codet5-* has it: RobertaTokenizer, <pad> <s> </s> <unk> <mask> at
                  0-4, RobertaProcessing (<s> A </s>), ByteLevel pre-tokenizer and decoder, sentinels added;
      pile-bpe    LLaMA-style BPE as EleutherAI/pile-t5-* has it: Prepend("▁") + Replace(" ", "▁") normalizer, no
                  pre-tokenizer, byte_fallback with <0x00>…<0xFF> in the vocabulary, fuse_unk, the
                  Replace/ByteFallback/Fuse/Strip decoder, "$A </s>" template, T5's <pad> </s> <unk> at 0-2."""
    import shutil
    from tokenizers import ByteLevelBPETokenizer, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    FOLDERS_DIR.mkdir(parents=True, exist_ok=True)
    corpus = bpe_corpus()

    def fresh(name):
        d = FOLDERS_DIR / name
        if d.exists():
            shutil.rmtree(d)
        return d

    def keep_json_only(d):
        for extra in ("vocab.json", "merges.txt", "spiece.model"):
            (d / extra).unlink(missing_ok=True)
        # compact JSON keeps Tests/Fixtures small; the content is what save_pretrained wrote
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.save(str(d / "tokenizer.json"), pretty=False)

    byte_level = ByteLevelBPETokenizer()
    byte_level.train_from_iterator(corpus, vocab_size=700, min_frequency=2,
                                   special_tokens=["<pad>", "<s>", "</s>", "<unk>", "<mask>"])
    byte_level._tokenizer.post_processor = processors.RobertaProcessing(sep=("</s>", 2), cls=("<s>", 1))
    fast = RobertaTokenizerFast(tokenizer_object=byte_level._tokenizer, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                mask_token="<mask>", add_prefix_space=False)
    fast.add_special_tokens({"additional_special_tokens": [f"<extra_id_{i}>" for i in range(5)]})
    d = fresh("codet5-bpe")
    fast.save_pretrained(str(d))
    keep_json_only(d)

    # The same tokenizer in the slow files Salesforce/codet5-* publish (vocab.json + merges.txt, no tokenizer.json),
    # which AutoTokenizer converts to RobertaTokenizerFast: once with transformers' own configuration files, once
    # with a tokenizer_config.json as written before transformers 4.34 (no added_tokens_decoder; the sentinels in
    # added_tokens.json and special_tokens_map.json), as the published repositories have it.
    d = fresh("codet5-slow")
    fast.save_pretrained(str(d), legacy_format=True)
    (d / "tokenizer.json").unlink(missing_ok=True)
    legacy = fresh("codet5-slow-legacy")
    shutil.copytree(d, legacy, dirs_exist_ok=True)
    (legacy / "tokenizer_config.json").write_text(json.dumps({
        "errors": "replace", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "add_prefix_space": False,
        "trim_offsets": True, "model_max_length": 512, "special_tokens_map_file": None,
        "name_or_path": "Salesforce/codet5-base", "tokenizer_class": "RobertaTokenizer"}), encoding="utf-8")
    (legacy / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
        "cls_token": "<s>", "mask_token": "<mask>",
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(5)]}), encoding="utf-8")

    # Train without the byte pieces, then lay the vocabulary out as LLaMA's: specials, <0x00>…<0xFF>, the rest.
    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trained.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, min_frequency=2,
                                                            special_tokens=["<pad>", "</s>", "<unk>"]))
    state = json.loads(trained.to_str())
    specials = ["<pad>", "</s>", "<unk>"]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [p for p, _ in sorted(state["model"]["vocab"].items(), key=lambda kv: kv[1]) if p not in specials]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["model"]["merges"]]
    model = models.BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=merges, unk_token="<unk>",
                       byte_fallback=True, fuse_unk=True)
    llama = Tokenizer(model)
    llama.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    llama.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                       decoders.Strip(" ", 1, 0)])
    llama.add_special_tokens(specials)
    llama.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=llama, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=5)
    d = fresh("pile-bpe")
    fast.save_pretrained(str(d))
    keep_json_only(d)

    # The same LLaMA-style model in the newer conversion layout (no normalizer; Metaspace pre-tokenizer and decoder,
    # prepend_scheme "first", split false), and the CodeT5 one with add_prefix_space on (a space goes in front of
    # every stretch between added tokens).
    from transformers import PreTrainedTokenizerFast
    sentinels = [f"<extra_id_{i}>" for i in range(5)]
    metaspace = Tokenizer.from_file(str(FOLDERS_DIR / "pile-bpe" / "tokenizer.json"))
    metaspace.normalizer = None
    metaspace.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    metaspace.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=metaspace, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=sentinels)
    d = fresh("pile-bpe-metaspace")
    fast.save_pretrained(str(d))
    keep_json_only(d)
    prefixed = Tokenizer.from_file(str(FOLDERS_DIR / "codet5-bpe" / "tokenizer.json"))
    prefixed.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    prefixed.post_processor = processors.RobertaProcessing(sep=("</s>", 2), cls=("<s>", 1), add_prefix_space=True)
    fast = RobertaTokenizerFast(tokenizer_object=prefixed, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                add_prefix_space=True)
    d = fresh("codet5-bpe-prefix")
    fast.save_pretrained(str(d))
    keep_json_only(d)


def build_cleanup():
    """tokenizer/small-slow-cleanup.json: the slow T5Tokenizer with clean_up_tokenization_spaces=True (what
    tokenizer_config.json files written by transformers < 4.45 often say): decode ends with clean_up_tokenization."""
    tokenizer = T5Tokenizer(vocab_file=str(SMALL_SPIECE), clean_up_tokenization_spaces=True)
    texts = ["hello , world . I 'm here", "don 't stop ! ok ?", "a . b , c ! d ? e 's f 've g 're h n't",
             "red apple blue", "The cat <extra_id_0> in the park ."]
    cases = [{"text": t, "ids": tokenizer(t).input_ids,
              "decoded": tokenizer.decode(tokenizer(t).input_ids),
              "decoded_skip_special": tokenizer.decode(tokenizer(t).input_ids, skip_special_tokens=True)} for t in texts]
    out = TOKENIZER_GOLDEN_DIR / "small-slow-cleanup.json"
    out.write_text(json.dumps({"generator": {"transformers": transformers.__version__}, "cases": cases},
                              ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"cleanup: {len(cases)} cases -> {out}")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["cleanup"]:
        build_cleanup()
        sys.exit(0)
    if sys.argv[1:] == ["bpe"]:
        make_bpe_folders()
        for folder_name in BPE_FOLDER_NAMES:
            build_folder(folder_name)
        sys.exit(0)
    build_cleanup()
    build("small", SMALL_SPIECE)
    build("t5", T5_SPIECE)
    make_folders()
    make_bpe_folders()
    for folder_name in FOLDER_NAMES + BPE_FOLDER_NAMES:
        build_folder(folder_name)
