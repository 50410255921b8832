#!/usr/bin/env python3
"""Writes tests/data/gguf/smollm2_forward_gold.json: an independent float64 forward of SmolLM2-135M-Instruct.Q4_1.gguf.

The reference for qrag's GGUF loader (server/model/gguf_loader.*), made once with gguf-py and numpy
(pip install gguf numpy; the committed file was made with gguf 0.19.0, numpy 2.4):

    python3 tests/model/make_gguf_forward_gold.py ~/.cache/qrag/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/data/gguf/smollm2_forward_gold.json

It shares no code with qrag: weights are dequantized by gguf-py, the q/k rows are put back into the Hugging Face
order (the inverse of llama.cpp's convert_hf_to_gguf.py LlamaModel.permute) and the model runs as transformers'
LlamaForCausalLM does (rotate-half RoPE, GQA, SwiGLU, RMSNorm), in float64. For each position of the prompt
it records the top-20 logits and the logits of a fixed set of ids.
"""
import json
import sys

import numpy as np
import gguf

FIXED_IDS = [0, 1, 2, 17, 260, 1000, 4649, 7042, 12345, 30000, 49151]


def main():
    path, out = sys.argv[1], sys.argv[2]
    r = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in r.fields.items() if k.startswith("llama.")}
    tensors = {t.name: t for t in r.tensors}
    tokens = r.fields["tokenizer.ggml.tokens"].contents()

    def w(name):
        t = tensors[name]
        shape = tuple(int(d) for d in t.shape[::-1])  # GGUF dims are innermost first
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)

    dim = fields["llama.embedding_length"]
    n_layers = fields["llama.block_count"]
    n_heads = fields["llama.attention.head_count"]
    n_kv = fields["llama.attention.head_count_kv"]
    eps = fields["llama.attention.layer_norm_rms_epsilon"]
    base = fields["llama.rope.freq_base"]
    hd = dim // n_heads

    def unpermute(m, heads):  # GGUF (interleaved pairs) -> HF (rotate-half) row order
        return m.reshape(heads, hd // 2, 2, m.shape[1]).swapaxes(1, 2).reshape(m.shape)

    # "The capital of France is", spelled with the GGUF's own byte-level pieces ('Ġ' = space).
    prompt = ["The", "\u0120capital", "\u0120of", "\u0120France", "\u0120is"]
    ids = [tokens.index(p) for p in prompt]
    T = len(ids)

    emb = w("token_embd.weight")
    x = emb[ids]

    def rms(v, g):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * g

    inv = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)

    def rope(q):  # q: [T, heads, hd]
        q1, q2 = q[..., : hd // 2], q[..., hd // 2:]
        rot = np.concatenate([-q2, q1], -1)
        return q * cos[:, None, :] + rot * sin[:, None, :]

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layers):
        p = f"blk.{l}."
        h = rms(x, w(p + "attn_norm.weight"))
        q = h @ unpermute(w(p + "attn_q.weight"), n_heads).T
        k = h @ unpermute(w(p + "attn_k.weight"), n_kv).T
        v = h @ w(p + "attn_v.weight").T
        q = rope(q.reshape(T, n_heads, hd))
        k = rope(k.reshape(T, n_kv, hd))
        v = v.reshape(T, n_kv, hd)
        rep = n_heads // n_kv
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, dim)
        x = x + o @ w(p + "attn_output.weight").T
        h = rms(x, w(p + "ffn_norm.weight"))
        g = h @ w(p + "ffn_gate.weight").T
        u = h @ w(p + "ffn_up.weight").T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w(p + "ffn_down.weight").T
    x = rms(x, w("output_norm.weight"))
    logits = x @ emb.T  # tied embeddings

    rows = []
    for t in range(T):
        top = np.argsort(-logits[t])[:20]
        rows.append({
            "top_ids": [int(i) for i in top],
            "top_logits": [float(logits[t, i]) for i in top],
            "fixed_logits": [float(logits[t, i]) for i in FIXED_IDS],
            "max_abs_logit": float(np.abs(logits[t]).max()),
        })
    json.dump({"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "prompt": "The capital of France is", "ids": ids,
               "fixed_ids": FIXED_IDS, "positions": rows}, open(out, "w"), indent=1)
    print("ids", ids, "argmax of last position:", int(np.argmax(logits[-1])), repr(tokens[int(np.argmax(logits[-1]))]))


if __name__ == "__main__":
    main()
