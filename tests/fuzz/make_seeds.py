#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/fuzz_<target>/ (committed; rerun to regenerate).

Seeds are small valid inputs (and a few near-misses) of each parser, so the fuzzer starts inside the format.
Sources: files of this repository (tests/data/bpe, deploy/qrag.yaml) and, for the SentencePiece and llama2.c
tokenizers and a few chat templates, ../shared (models/stories260K, data/chat-templates; see their SOURCES.md).
Usage: python3 tests/fuzz/make_seeds.py [--shared DIR]
"""
import argparse
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", "fuzz_" + target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, blobs, off = {}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs += raw
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blobs


def llama2c(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared=True):
    head = dim // heads
    kv_dim = kv_heads * head
    n = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * dim * kv_dim + layers * dim * dim
         + layers * dim + 3 * layers * dim * hidden + dim + seq_len * head)
    if not shared:
        n += vocab * dim
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if shared else -vocab, seq_len)
    vals = [((i * 2654435761) % 1000) / 1000.0 - 0.5 for i in range(n)]
    return hdr + struct.pack("<%df" % n, *vals)


def grpc_varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = grpc_varint((num << 3) | wire)
    if wire == 0:
        return key + grpc_varint(payload)
    if wire == 2:
        return key + grpc_varint(len(payload)) + payload
    if wire == 5:
        return key + struct.pack("<f", payload)
    raise ValueError(wire)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()

    # safetensors
    f32 = struct.pack("<4f", 1.0, -2.5, 0.0, 3.25)
    bf16 = struct.pack("<4H", 0x3F80, 0xC020, 0x0000, 0x4050)
    f16 = struct.pack("<2H", 0x3C00, 0xC100)
    write("safetensors", "two_tensors", safetensors({"a": ("F32", [2, 2], f32), "b": ("BF16", [4], bf16)},
                                                     {"format": "pt"}))
    write("safetensors", "f16_scalarish", safetensors({"w": ("F16", [1, 2], f16)}))
    write("safetensors", "unknown_dtype", safetensors({"i": ("I64", [1], struct.pack("<q", 7))}))
    write("safetensors", "empty", safetensors({}))

    # llama2.c checkpoints (legacy format): shared and separate classifier
    write("llama2c_checkpoint", "tiny_shared", llama2c(8, 16, 1, 2, 2, 16, 4))
    write("llama2c_checkpoint", "tiny_gqa_unshared", llama2c(8, 12, 2, 2, 1, 12, 4, shared=False))

    # tokenizers from ../shared (stories260K's 512-piece vocabulary)
    stories = os.path.join(args.shared, "models", "stories260K")
    text = "Once upon a time, 12345 caf\u00e9 \U0001F600 \u4e2d\u6587\n\tend"
    with open(os.path.join(stories, "tok512.bin"), "rb") as f:
        write("llama2c_tokenizer", "tok512", struct.pack("<H", 512) + f.read() + b"\0" + text.encode())
    with open(os.path.join(stories, "tok512.model"), "rb") as f:
        write("sentencepiece", "tok512", f.read() + b"\0" + text.encode())

    # byte-level BPE tokenizer.json files of tests/data/bpe (made by tests/data/bpe/make_fixtures.py)
    special = "<|im_start|>user\nHi 2024!<|im_end|> <|begin_of_text|> \u00a0 x\r\n  y"
    for name in ("gpt2nfc", "llama3", "smollm"):
        d = os.path.join(ROOT, "tests", "data", "bpe", name)
        tok = open(os.path.join(d, "tokenizer.json"), "rb").read()
        cfg_path = os.path.join(d, "tokenizer_config.json")
        cfg = open(cfg_path, "rb").read() if os.path.exists(cfg_path) else b""
        write("bpe_tokenizer", name, tok + b"\0" + cfg + b"\0" + (text + special).encode())

    # chat templates: hand-written ones exercising the engine's features, plus real templates from ../shared
    conv = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|>"},
                         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+2?"}],
            "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>"}
    ctx = json.dumps(conv)
    write("jinja", "chatml",
          "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] | trim + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}\0" + ctx)
    write("jinja", "llama3_style",
          "{{- bos_token }}{%- for message in messages %}{%- if loop.first and message.role == 'system' %}"
          "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + message.content + '<|eot_id|>' }}"
          "{%- else %}{{- '<|start_header_id|>' ~ message['role'] ~ '<|end_header_id|>\\n\\n' ~ message.content"
          " | trim ~ '<|eot_id|>' }}{%- endif %}{%- endfor %}\0" + ctx)
    write("jinja", "macros_namespace",
          "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1) | int }}{% endif %}{% endmacro %}"
          "{% set ns = namespace(count=0, last=none) %}{% for m in messages if m.role != 'system' %}"
          "{% set ns.count = ns.count + 1 %}{% set ns.last = m %}{% endfor %}{{ fact(5) }} {{ ns.count }} "
          "{{ ns.last.content[::-1] }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }} "
          "{{ {'a': [1, 2, {'b': none}]} | tojson(indent=2) }}{% for k, v in {'x': 1}.items() %}{{ k }}={{ v }}"
          "{% endfor %}{{ 'a,b,,c'.split(',') | join('|') }}{{ raise_exception('stop') if false }}\0" + ctx)
    write("jinja", "custom_context",
          "{{ strftime_now('%Y-%m-%d') }} {{ tools | default([]) | length }} {% if x is defined %}{{ x.y }}"
          "{% endif %}{{ s.strip('x').upper().startswith('A') }}{{ l[1:3] }}{{ 'b' in l }}\0"
          + json.dumps({"x": {"y": [1, "two"]}, "s": "xabcx", "l": ["a", "b", "c", "d"], "tools": [{"name": "f"}]}))
    templates = os.path.join(args.shared, "data", "chat-templates")
    for name in ("smollm2-instruct", "llama-3.1-instruct", "qwen2.5-instruct", "mistral-7b-instruct-v0.1",
                 "gemma-2-it"):
        with open(os.path.join(templates, name + ".jinja"), "rb") as f:
            write("jinja", name, f.read() + b"\0" + ctx.encode())

    # the server's YAML config
    write("config_yaml", "deploy_qrag_yaml", open(os.path.join(ROOT, "deploy", "qrag.yaml"), "rb").read() + b"\0x")
    write("config_yaml", "lists_and_env",
          "model: ${FUZZ_VAR}\nlisten: \"127.0.0.1:0\"\nauth-tokens: ${MISSING:-/tmp/t}\nmax-running: 4\n"
          "stop:\n  - a\n  - b\ncost: $$5\n\0/models/m.bin")

    # JSONL ingest lines
    write("ingest_jsonl", "full", json.dumps({"id": "a", "title": "T", "text": "body \u00e9",
                                               "metadata": {"lang": "en", "n": 3, "tags": ["x"]}}))
    write("ingest_jsonl", "beir", json.dumps({"_id": 42, "title": "", "text": "x"}))
    write("ingest_jsonl", "bad_text", '{"id": "a", "text": 3}')

    # GenerateRequest wire bytes (proto/qrag/v1/inference.proto); first byte picks the served model list
    rag = field(1, 2, b"docs") + field(2, 0, 3) + field(5, 2, field(1, 2, b"lang") + field(2, 2, b"en"))
    requests = {
        "minimal": field(2, 2, b"Once upon a time"),
        "full": (field(1, 2, b"m") + field(2, 2, b"Hello") + field(3, 0, 8) + field(4, 5, 0.7)
                 + field(5, 5, 0.9) + field(6, 0, 40) + field(7, 5, 0.05) + field(8, 5, 1.1) + field(9, 0, 1234)
                 + field(10, 2, b"\n\n") + field(10, 2, b"The end") + field(11, 0, 2) + field(12, 2, rag)),
        "tiny_temperature": field(2, 2, b"x") + field(4, 5, 1e-40),
        "unknown_model": field(1, 2, b"nope") + field(2, 2, b"x"),
    }
    for i, (name, wire) in enumerate(requests.items()):
        write("generate_request", name, bytes([i & 1]) + wire)
    # ChatRequest wire bytes (first byte bit 1 set): messages = 2 {role = 1, content = 2}, add_generation_prompt = 13
    def message(role, content):
        return field(2, 2, field(1, 2, role) + field(2, 2, content))
    chats = {
        "chat_minimal": message(b"user", b"Hi"),
        "chat_full": (field(1, 2, b"m") + message(b"system", b"Be brief.") + message(b"user", b"Hello")
                      + message(b"assistant", b"Hi!") + message(b"user", "caf\u00e9 <|im_end|>".encode())
                      + field(3, 0, 8) + field(4, 5, 0.7) + field(10, 2, b"END") + field(12, 2, rag)
                      + field(13, 0, 0)),
        "chat_unknown_role": message(b"wizard", b"x"),
        "chat_bad_utf8": message(b"user", b"\xff"),
    }
    for i, (name, wire) in enumerate(chats.items()):
        write("generate_request", name, bytes([2 | (i & 1)]) + wire)

    # OpenAI HTTP bodies (first byte: 0 chat, 1 completions, 2 embeddings)
    bodies = {
        "chat_full": (0, {"model": "m", "messages": [{"role": "developer", "content": "Be brief."},
                                                     {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                          "max_completion_tokens": 8, "temperature": 0.7, "top_p": 0.9, "stop": ["END"], "seed": -3,
                          "stream": True, "stream_options": {"include_usage": True}, "logprobs": True,
                          "top_logprobs": 2, "rag": {"collection": "d", "top_k": 2, "filter": {"k": "v"}}}),
        "chat_refused": (0, {"messages": [{"role": "user", "content": "x"}], "n": 3, "tools": [{}]}),
        "chat_unknown": (0, {"messages": [{"role": "user", "content": "x"}], "temprature": 1}),
        "completion": (1, {"prompt": ["Once"], "max_tokens": 4, "logprobs": 2, "echo": False}),
        "completion_batch": (1, {"prompt": ["a", "b"]}),
        "embeddings": (2, {"input": ["a", "b"], "encoding_format": "base64", "model": "x"}),
    }
    for name, (endpoint, body) in bodies.items():
        write("openai_request", name, bytes([endpoint]) + json.dumps(body).encode())
    write("openai_request", "not_json", b"\x00{\"messages\": [")


if __name__ == "__main__":
    main()
