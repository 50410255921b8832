#!/usr/bin/env python3
"""Writes tests/data/gguf/gold.gguf, the gold file of tests/model/gguf_test.cc and tests/quant/gguf_blocks_test.cc.

Made once with gguf-py (pip install gguf numpy; the committed file was made with gguf 0.19.0, numpy 2.4):

    python3 tests/model/make_gguf_gold.py tests/data/gguf/gold.gguf

The file holds
  - metadata of every GGUF value type (the test knows the values written here), nested arrays, and
    general.alignment = 64 (so the data section and the tensor offsets use a non-default alignment);
  - for every type qrag dequantizes, a [2, 256] tensor `<type>` in that type and the F32 tensor
    `<type>.expected` holding gguf-py's dequantization of it (gguf.quants.dequantize), which qrag must
    reproduce bit for bit. Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 blocks are gguf-py's quantization of seeded normal values
    (one all-zero block included); K-quant blocks are seeded random bytes with finite fp16 super-block scales
    (gguf-py cannot quantize to them); F16/BF16 hold random values plus zeros, subnormals and infinities.
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

ROWS, COLS = 2, 256


def k_quant_bytes(rng, qtype):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * COLS // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    # Finite, moderate fp16 scales where the block keeps them (d, dmin first for Q4_K/Q5_K, d last for Q6_K).
    scales = (rng.standard_normal((n_blocks, 2)) * 0.01).astype(np.float16).view(np.uint8)
    if qtype in (T.Q4_K, T.Q5_K):
        raw[:, 0:4] = scales
    else:
        raw[:, type_size - 2:] = scales[:, 0:2]
    return raw


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/gguf/gold.gguf"
    rng = np.random.default_rng(20261203)
    w = gguf.GGUFWriter(out, arch="llama")
    w.add_custom_alignment(64)
    w.add_name("qrag-gguf-gold")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.718281828459045)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo \u4e16\u754c \U0001F600")
    w.add_key_value("test.arr_i32", [1, -2, 3], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("test.arr_u8", [0, 255, 7], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("test.arr_f32", [0.5, -1.25], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("test.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_key_value("test.arr_str", ["a", "", "\u00fcml"], V.ARRAY, sub_type=V.STRING)
    w.add_key_value("test.arr_nested", [[1, 2], [3], [4, 5, 6]], V.ARRAY, sub_type=V.ARRAY)

    tensors = []
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    x[0, :32] = 0  # one all-zero block
    x[1, 32:64] *= 100
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        q = gguf.quants.quantize(x, qtype)
        tensors.append((qtype.name, q, qtype))
    for qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
        q = k_quant_bytes(rng, qtype).reshape(ROWS, -1)
        tensors.append((qtype.name, q, qtype))
    f16 = (rng.standard_normal((ROWS, COLS)) * 4).astype(np.float16)
    f16.flat[:6] = np.array([0.0, -0.0, 6e-8, -6.1e-5, np.inf, -np.inf], dtype=np.float16)
    tensors.append(("F16", f16.view(np.uint8), T.F16))
    bf16 = rng.integers(0, 65536, size=(ROWS, COLS), dtype=np.uint32).astype(np.uint16)
    exp = (bf16 >> 7) & 0xFF
    bf16[exp == 0xFF] &= 0x807F  # no inf/NaN from the random bits (NaN payloads are not compared)
    bf16.flat[:4] = np.array([0x0000, 0x8000, 0x7F80, 0x0001], dtype=np.uint16)
    tensors.append(("BF16", bf16.view(np.uint8), T.BF16))
    f32 = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    tensors.append(("F32", f32.view(np.uint8), T.F32))

    for name, raw, qtype in tensors:
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        expected = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(ROWS, COLS)
        w.add_tensor(name + ".expected", expected)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
