#!/usr/bin/env python3
"""Writes tests/data/gguf/smollm2_llama_cpp_tokens.json: llama.cpp's token ids for the SmolLM2 GGUF's tokenizer.

Tokenizer truth for qrag's GGUF tokenizer (server/model/gguf_tokenizer.*), made once with llama.cpp through
llama-cpp-python (pip install llama-cpp-python==0.3.36, built from the PyPI sdist; not installed by CI):

    python3 tests/model/make_gguf_tokenizer_gold.py ~/.cache/qrag/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/data/gguf/smollm2_llama_cpp_tokens.json

Every case is Llama(path, vocab_only=True).tokenize(text, add_bos=False, special=special): unicode, emoji,
CJK, digits, code, whitespace runs, and special-token text both as plain text (special=False) and parsed as
special tokens (special=True).
"""
import json
import sys

import llama_cpp

TEXTS = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", " \n", "\t\t\n  \n",
    "Hello", "Hello world", " Hello world", "Hello World!", "hello, world.", "HELLO WORLD",
    "The capital of France is", "The quick brown fox jumps over the lazy dog.",
    "I'm sure it's fine, isn't it? We'll see; they've gone. You'd know.",
    "0", "1", "12", "123", "1234", "12345", "3.14159", "1,000,000", "2026-12-03", "v1.2.3", "x=42;y=-7",
    "\u00e9t\u00e9 na\u00efve caf\u00e9 r\u00e9sum\u00e9", "\u00dcber Stra\u00dfe \u00c4rger",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u05e9\u05dc\u05d5\u05dd",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\U0001F600", "\U0001F600\U0001F601\U0001F602", "I \u2764\ufe0f NY \U0001F5FD", "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
    "\U0001F44D\U0001F3FD thumbs", "flags \U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA",
    "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "<html><body class=\"x\">Hi</body></html>", "SELECT * FROM t WHERE id = 7;", "{\"key\": [1, 2, 3], \"ok\": true}",
    "    indented four", "a  b   c    d", "trailing spaces   ", "   leading spaces", "tab\tseparated\tvalues",
    "!!!???...", "(parens) [brackets] {braces}", "~`@#$%^&*_+=|\\/<>", "--- *** ___", "\u2014 \u2013 \u2026 \u00ab\u00bb \u201c\u201d",
    "e\u0301 combining", "\u00a0nbsp\u00a0", "zero\u200bwidth", "\u00bd \u00b2 \u2460 \u0663\u0664",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text <|im_end|> more", "<|im_start|><|im_start|>", "<|im_start", "|im_start|>", "<repo_name>qrag<file_sep>main.cc",
]
SPECIAL_TOO = {t for t in TEXTS if "<|" in t or "<repo_name>" in t}


def main():
    path, out = sys.argv[1], sys.argv[2]
    llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    cases = []
    for text in TEXTS:
        for special in ([False, True] if text in SPECIAL_TOO else [False]):
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
            cases.append({"text": text, "special": special, "ids": list(ids)})
    header = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "tool": f"llama-cpp-python {llama_cpp.__version__}"}
    with open(out, "w", encoding="utf-8") as f:  # one case per line
        f.write(json.dumps(header, ensure_ascii=False)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(len(cases), "cases")


if __name__ == "__main__":
    main()
