#!/usr/bin/env python3
"""PyTorch's GEMMs on the same GPU and shapes as bench/gpu/gemm_bench.cc, for the side-by-side in
docs/benchmarks.md: torch.matmul (bf16), torch._scaled_mm (FP8 E4M3 -> bf16, per-tensor scales, and row-wise
scales where supported), torch._int_mm (int8 -> int32, where supported).

Timing as gemm_bench: CUDA events around `iters` calls after 3 warm-ups, median of 5 batches, random
operands, weights rotated over >= 512 MB of copies so that the 60 MB L2 does not serve them.

usage: gemm_torch.py [--json PATH] [--iters N] [--quick]
"""
import argparse
import json
import sys

import torch

SHAPES = [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)]
MS = [1, 16, 64, 256, 2048]
ROTATE_BYTES = 512 << 20


def time_ms(fn, iters):
    for i in range(3):
        fn(i)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    batches, call = [], 0
    for _ in range(5):
        start.record()
        for _ in range(iters):
            fn(call)
            call += 1
        stop.record()
        stop.synchronize()
        batches.append(start.elapsed_time(stop) / iters)
    return sorted(batches)[2]


def weights(n, k, dtype, make):
    nbytes = n * k * torch.empty((), dtype=dtype).element_size()
    copies = max(1, min(16, ROTATE_BYTES // max(nbytes, 1)))
    return [make((n, k)) for _ in range(copies)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gemm_torch: no CUDA GPU", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    torch.manual_seed(0)
    fp8 = torch.float8_e4m3fn
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda}
    print(f"torch {info['torch']} (CUDA {info['cuda']}) on {info['device']}")

    def rand_bf16(shape):
        return torch.randn(shape, device=dev, dtype=torch.bfloat16)

    def rand_fp8(shape):
        return (torch.randn(shape, device=dev) * 64).clamp(-448, 448).to(fp8)

    def rand_i8(shape):
        return torch.randint(-127, 128, shape, device=dev, dtype=torch.int8)

    one = torch.ones((), device=dev, dtype=torch.float32)
    results = []

    def record(name, m, n, k, ms, note=""):
        tflops = 2.0 * m * n * k / (ms * 1e-3) / 1e12
        results.append({"name": name, "m": m, "n": n, "k": k, "ms": ms, "tflops": tflops, "note": note})
        print(f"{name:28s} m={m:5d} n={n:6d} k={k:5d} {ms:9.4f} ms {tflops:8.1f} TFLOP/s {note}", flush=True)

    def bench_shape(m, n, k, rowwise):
        # bf16 torch.matmul
        ws = weights(n, k, torch.bfloat16, rand_bf16)
        x = rand_bf16((m, k))
        record("torch_matmul_bf16", m, n, k, time_ms(lambda i: torch.matmul(x, ws[i % len(ws)].t()), args.iters))
        del ws
        # fp8 torch._scaled_mm, per-tensor scales; B must be column-major: w.t() of a row-major [n, k].
        ws = weights(n, k, fp8, rand_fp8)
        x8 = rand_fp8((m, k))
        try:
            record("torch_scaled_mm_fp8", m, n, k, time_ms(
                lambda i: torch._scaled_mm(x8, ws[i % len(ws)].t(), scale_a=one, scale_b=one,
                                           out_dtype=torch.bfloat16), args.iters))
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"torch._scaled_mm fp8 m={m} n={n} k={k}: {type(e).__name__}: {e}")
        if rowwise:
            sa = torch.ones((m, 1), device=dev, dtype=torch.float32)
            sb = torch.ones((1, n), device=dev, dtype=torch.float32)
            try:
                record("torch_scaled_mm_fp8_rowwise", m, n, k, time_ms(
                    lambda i: torch._scaled_mm(x8, ws[i % len(ws)].t(), scale_a=sa, scale_b=sb,
                                               out_dtype=torch.bfloat16), args.iters))
            except Exception as e:  # noqa: BLE001
                print(f"torch._scaled_mm fp8 row-wise m={m} n={n} k={k}: {type(e).__name__}: {e}")
        del ws
        # int8 torch._int_mm
        ws = weights(n, k, torch.int8, rand_i8)
        xi = rand_i8((m, k))
        try:
            record("torch_int_mm_int8", m, n, k, time_ms(lambda i: torch._int_mm(xi, ws[i % len(ws)].t()),
                                                         args.iters))
        except Exception as e:  # noqa: BLE001
            print(f"torch._int_mm m={m} n={n} k={k}: {type(e).__name__}: {e}")
        del ws
        torch.cuda.empty_cache()

    bench_shape(8192, 8192, 8192, rowwise=True)
    for n, k in SHAPES:
        for m in MS:
            if args.quick and m not in (1, 2048):
                continue
            bench_shape(m, n, k, rowwise=m <= 64 or m == 2048)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
