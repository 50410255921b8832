#!/usr/bin/env python3
"""Per-tensor weight SQNR of the two w4 grids on a GGUF model's weights (as qrag's loader dequantizes them).

usage: w4_sqnr_gguf.py MODEL.gguf [--tensors REGEX]      (needs numpy and gguf, e.g. /work/venv-gguf/bin/python)

For each quantized tensor: SQNR = 10 log10(sum w^2 / sum (w - q(w))^2) in dB, vectors of 32 along k, for
  - symmetric int4, codes in [-7, 7], scale = vector absmax / 7 ("sym max"), and the best of 26 clip fractions
    of the absmax in [0.5, 1] per vector by squared error ("sym mse", an upper bound for OCTAV's clip);
  - asymmetric (qrag's w4 default, quant/w4.h): codes in [0, 15], value = code * scale + min,
    min = vector minimum, scale = (max - min) / 15.
Q4_1 blocks are exactly such an asymmetric grid over the same 32 weights, so the asymmetric grid reproduces
them ("inf": no error at all in float64), while symmetric int4 cannot represent an offset grid: ~19-21 dB.
"""
import argparse
import re

import numpy as np
from gguf import GGUFReader, quants


def sym(w, mse):
    v = w.reshape(-1, 32).astype(np.float64)
    amax = np.abs(v).max(1, keepdims=True)
    out, err = None, None
    for frac in (np.linspace(0.5, 1, 26) if mse else [1.0]):
        s = amax * frac / 7
        s[s == 0] = 1
        q = np.clip(np.round(v / s), -7, 7) * s
        e = ((q - v) ** 2).sum(1, keepdims=True)
        if out is None:
            out, err = q, e
        else:
            better = e < err
            out, err = np.where(better, q, out), np.minimum(e, err)
    return out.reshape(w.shape)


def asym(w):
    v = w.reshape(-1, 32).astype(np.float64)
    mn, mx = v.min(1, keepdims=True), v.max(1, keepdims=True)
    s = (mx - mn) / 15
    s[s == 0] = 1
    return (np.clip(np.round((v - mn) / s), 0, 15) * s + mn).reshape(w.shape)


def sqnr(w, q):
    w = w.astype(np.float64)
    noise = ((w - q) ** 2).sum()
    return float("inf") if noise == 0 else 10 * np.log10((w ** 2).sum() / noise)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--tensors", default=r".*", help="regex on tensor names")
    args = ap.parse_args()
    print("| tensor | GGUF type | shape [n, k] | sym max (dB) | sym mse (dB) | asymmetric (dB) |")
    print("|---|---|---|---:|---:|---:|")
    for t in GGUFReader(args.model).tensors:
        if t.tensor_type.name in ("F32", "F16") or not re.search(args.tensors, t.name):
            continue
        w = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        print(f"| {t.name} | {t.tensor_type.name} | {list(w.shape)} | {sqnr(w, sym(w, False)):.2f} | "
              f"{sqnr(w, sym(w, True)):.2f} | {sqnr(w, asym(w)):.2f} |")


if __name__ == "__main__":
    main()
