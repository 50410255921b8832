#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_gguf.cc into tests/fuzz/corpus/fuzz_gguf/ (gguf-py; pip install gguf numpy):

    python3 tests/fuzz/make_gguf_seeds.py tests/fuzz/corpus/fuzz_gguf

Seeds (tests/fuzz/make_seeds.py writes those of the other targets; this one needs gguf-py): a tiny llama
model with a gpt2 tokenizer and a tiny qwen2 model with biases and a SentencePiece-style tokenizer (F32, Q8_0,
Q4_0, Q4_1, Q5_0, Q5_1 tensors), a metadata-only file with nested arrays, a header cut short. The reader's gold file tests/data/gguf/gold.gguf (every block type, K-quants included)
is added to the fuzzer's working corpus by tests/run-fuzz.sh (one committed copy, not two).
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V


def tiny_model(path, arch, tokenizer):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, arch=arch)
    dim, hidden, vocab = 32, 64, 8
    w.add_uint32(f"{arch}.embedding_length", dim)
    w.add_uint32(f"{arch}.feed_forward_length", hidden)
    w.add_uint32(f"{arch}.block_count", 1)
    w.add_uint32(f"{arch}.attention.head_count", 2)
    w.add_uint32(f"{arch}.attention.head_count_kv", 1)
    w.add_uint32(f"{arch}.context_length", 64)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    if tokenizer == "gpt2":
        w.add_string("tokenizer.ggml.model", "gpt2")
        w.add_string("tokenizer.ggml.pre", "smollm")
        w.add_array("tokenizer.ggml.tokens", ["<|endoftext|>", "<|im_start|>", "H", "e", "l", "o", "He", "\u0120w"])
        w.add_key_value("tokenizer.ggml.token_type", [3, 3, 1, 1, 1, 1, 1, 1], V.ARRAY, sub_type=V.INT32)
        w.add_array("tokenizer.ggml.merges", ["H e"])
    else:
        w.add_string("tokenizer.ggml.model", "llama")
        toks = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab"]
        w.add_array("tokenizer.ggml.tokens", toks)
        w.add_key_value("tokenizer.ggml.scores", [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0], V.ARRAY, sub_type=V.FLOAT32)
        w.add_key_value("tokenizer.ggml.token_type", [2, 3, 3, 1, 1, 1, 1, 1], V.ARRAY, sub_type=V.INT32)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 0)

    def add(name, shape, qtype=T.F32):
        x = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, x)
        else:
            q = gguf.quants.quantize(x, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    add("token_embd.weight", (vocab, dim), T.Q8_0)
    add("output_norm.weight", (dim,))
    add("blk.0.attn_norm.weight", (dim,))
    add("blk.0.ffn_norm.weight", (dim,))
    add("blk.0.attn_q.weight", (dim, dim), T.Q8_0)
    add("blk.0.attn_k.weight", (16, dim))
    add("blk.0.attn_v.weight", (16, dim))
    add("blk.0.attn_output.weight", (dim, dim), T.Q4_0 if arch == "llama" else T.Q5_1)
    add("blk.0.ffn_gate.weight", (hidden, dim), T.Q4_1)
    add("blk.0.ffn_up.weight", (hidden, dim), T.Q5_0)
    add("blk.0.ffn_down.weight", (dim, hidden), T.Q8_0)
    if arch == "qwen2":
        add("blk.0.attn_q.bias", (dim,))
        add("blk.0.attn_k.bias", (16,))
        add("blk.0.attn_v.bias", (16,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/fuzz_gguf"
    os.makedirs(out, exist_ok=True)
    tiny_model(os.path.join(out, "tiny_llama_gpt2.gguf"), "llama", "gpt2")
    tiny_model(os.path.join(out, "tiny_qwen2_spm.gguf"), "qwen2", "llama")
    w = gguf.GGUFWriter(os.path.join(out, "metadata_only.gguf"), arch="llama")
    w.add_custom_alignment(64)
    w.add_key_value("nested", [[1, 2], [3]], V.ARRAY, sub_type=V.ARRAY)
    w.add_array("strings", ["a", "\u00e9", ""])
    w.add_bool("flag", True)
    w.add_float64("f64", 1.5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(out, "tiny_llama_gpt2.gguf"), "rb") as f:
        head = f.read(200)
    with open(os.path.join(out, "truncated_header.gguf"), "wb") as f:
        f.write(head)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


if __name__ == "__main__":
    main()
