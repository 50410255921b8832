#!/usr/bin/env python3
"""Builds the byte-level BPE test fixtures of tests/model/bpe_tokenizer_test.cc.

Small tokenizers are trained with the Hugging Face `tokenizers` library (the reference implementation,
`python3 -m pip install tokenizers`) in the shapes real models use, and the library's own encodings and
decodings of a fixed list of strings are written next to them:

  llama3/   Sequence[Split(Llama-3 regex, Isolated), ByteLevel(use_regex=false)], ignore_merges, BOS
            <|begin_of_text|> via Sequence[ByteLevel, TemplateProcessing], special tokens, merges as pairs,
            tokenizer_config.json (eos_token) + generation_config.json (eos_token_id list).
  smollm/   Sequence[Digits(individual), ByteLevel(use_regex=true)] (SmolLM / StarCoder style), no BOS,
            merges written as "a b" strings, a non-special added token with lstrip/rstrip.
  gpt2nfc/  normalizer NFC, ByteLevel(add_prefix_space=true, use_regex=true) alone (GPT-2 pattern),
            post_processor ByteLevel, single_word and normalized added tokens, no tokenizer_config.json.

Each <name>/expected.json holds, per test string: `ids` (encode with special tokens added and parsed, the
library default), `ids_no_bos` (add_special_tokens=False), `ids_literal` (special tokens not parsed:
encode_special_tokens=True), and the library's decodings (skip_special_tokens=True) of `ids` and
`ids_literal`; per fixture `vocab_size`, `special_ids` and `adds_prefix_space`. Run from anywhere: python3 tests/data/bpe/make_fixtures.py
"""

import json
import os

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.",
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do.",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "I'm sure you'll see that they've done it; we'd go if it's fine. You're right, I'd say.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 65536 3.14159 2.71828 1,000,000.",
    "def tokenize(text):\n    return [t for t in text.split() if t]\n\nprint(tokenize('a b c'))\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += x[i] * y[i];\n}\n",
    "Le café est très bon. Voilà une résumé du naïve garçon à la façade. Où est la bibliothèque ?",
    "Die Straße ist schön. Über den Bergen wohnt der Müller. Grüße aus München!",
    "Привет, как дела? Это пример текста на русском языке.",
    "Καλημέρα κόσμε. Αυτό είναι ένα παράδειγμα.",
    "日本語のテキストです。東京は大きな都市です。",
    "中文测试：你好，世界！今天天气很好。",
    "한국어 문장입니다. 안녕하세요!",
    "Emoji: 😀 😃 😄 👍 👍🏽 ❤️ ✅ 🚀 and more 🎉🎉",
    "Whitespace   runs\t\tand\n\nnewlines\r\n are   common    in   text.",
    "Retrieval-augmented generation (RAG) combines a retriever with a generator model.",
    "Quantization to FP8, int8 and int4 reduces memory and energy per token.",
    "https://example.com/path?query=1&other=two#anchor and user@example.org",
]

CASES = [
    "",
    "Hello world",
    " Hello world",
    "Hello World!",
    "Hello, world! How are you?",
    "  two leading spaces",
    "trailing spaces   ",
    "I'm sure you'll see they've done it, we'd go, it's fine",
    "DON'T SHOUT, I'LL HEAR YOU'RE HERE",
    "digits 1234567890 and 3.14159 and 1,000,000",
    "12345",
    "a1b22c333d4444",
    "tabs\tand\ttabs\t",
    "new\nlines\n\nmore\r\nCRLF\r\n",
    "   \n\t  mixed   whitespace\t\t\n",
    "multiple     spaces    here",
    "\n",
    " ",
    "\t",
    "     ",
    "café naïve résumé façade",
    "Ünïcödé Straße Grüße",
    "Καλημέρα κόσμε",
    "Привет мир",
    "日本語のテキスト",
    "中文测试，标点！",
    "한국어",
    "emoji 😀👍🏽 and 👨‍👩‍👧 family",
    "❤️ ✅ 🚀",
    "decomposed e\u0301 and A\u030a (NFD) vs é Å",
    "ﬁ ligature ½ and ２ fullwidth",
    "<|begin_of_text|>Hello<|eot_id|>",
    "text with <|endoftext|> inside",
    "<|im_start|>user\nhi there<|im_end|>\n",
    "code: def f(x):\n    return x**2  # comment",
    "URL https://example.com/path?q=1&r=2",
    "punctuation!!! ??? ... --- ((()))",
    "email@example.com",
    "The quick brown fox jumps over the lazy dog.",
    "qrag qragqrag qrag!",
    "a <custom> b<custom>c  <custom>  d",
    "[MASK] word[MASK] [MASK]word [MASK].",
    "x" * 64,
    "Once upon a time, there was a little girl named Lily.",
]


def train(pre_tokenizer, normalizer=None, ignore_merges=False, vocab_size=600):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 3, trainer)
    return tok


def add_vocab_entry(tok, token):
    """Adds `token` to the BPE vocab without a merge that builds it (exercises ignore_merges)."""
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    vocab[token] = max(vocab.values()) + 1
    return Tokenizer.from_str(json.dumps(data))


def write_fixture(name, tok, merges_as_strings=False, tokenizer_config=None, generation_config=None,
                  adds_prefix_space=False):
    out_dir = os.path.join(HERE, name)
    os.makedirs(out_dir, exist_ok=True)
    data = json.loads(tok.to_str())
    if merges_as_strings:
        data["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text)
    # Reload what was written so the expectations come from exactly that file.
    ref = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
    for fname, content in (("tokenizer_config.json", tokenizer_config),
                           ("generation_config.json", generation_config)):
        path = os.path.join(out_dir, fname)
        if content is None:
            if os.path.exists(path):
                os.remove(path)
        else:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(content, f, indent=1)
                f.write("\n")

    cases = []
    for s in CASES:
        ref.encode_special_tokens = False
        ids = ref.encode(s, add_special_tokens=True).ids
        ids_no_bos = ref.encode(s, add_special_tokens=False).ids
        ref.encode_special_tokens = True
        ids_literal = ref.encode(s, add_special_tokens=True).ids
        ref.encode_special_tokens = False
        cases.append({
            "text": s,
            "ids": ids,
            "ids_no_bos": ids_no_bos,
            "ids_literal": ids_literal,
            "decoded": ref.decode(ids, skip_special_tokens=True),
            "decoded_literal": ref.decode(ids_literal, skip_special_tokens=True),
        })
    all_ids = list(ref.get_vocab(with_added_tokens=True).values())
    expected = {
        "generator": f"tests/data/bpe/make_fixtures.py with tokenizers {tokenizers.__version__}",
        "vocab_size": max(all_ids) + 1,
        "adds_prefix_space": adds_prefix_space,  # decode(encode(x)) == " " + x for x not starting with " "
        "special_ids": sorted(t for t, v in ref.get_added_tokens_decoder().items() if v.special),
        "cases": cases,
    }
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{name}: vocab {expected['vocab_size']}, {len(cases)} cases, "
          f"{os.path.getsize(os.path.join(out_dir, 'tokenizer.json'))} bytes")


def make_llama3():
    tok = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ]), ignore_merges=True)
    tok = add_vocab_entry(tok, "Ġqrag")  # reachable only through ignore_merges
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    write_fixture("llama3", tok,
                  tokenizer_config={"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
                  generation_config={"bos_token_id": bos,
                                     "eos_token_id": [tok.token_to_id("<|end_of_text|>"),
                                                      tok.token_to_id("<|eot_id|>")]})


def make_smollm():
    tok = train(pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ]))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    tok.add_tokens([AddedToken("<custom>", special=False, normalized=False, lstrip=True, rstrip=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    write_fixture("smollm", tok, merges_as_strings=True,
                  tokenizer_config={"eos_token": {"content": "<|im_end|>", "special": True}})


def make_gpt2nfc():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True),
                normalizer=normalizers.NFC())
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("[MASK]", special=False, normalized=True, single_word=True),
                    AddedToken("Å", special=False, normalized=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    write_fixture("gpt2nfc", tok, adds_prefix_space=True)


if __name__ == "__main__":
    make_llama3()
    make_smollm()
    make_gpt2nfc()
