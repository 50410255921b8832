#!/usr/bin/env python3
"""Writes tests/data/gguf/smollm2_greedy_gold.json: transformers' fp32 greedy continuations (48 tokens) of 12
prompts on SmolLM2-135M-Instruct's GGUF (transformers dequantizes the GGUF's Q4_1/Q8_0 blocks to fp32 itself,
`gguf_file=`). The prompt ids are llama.cpp's (llama-cpp-python, tokenize(add_bos=False, special=True)):
transformers' tokenizer.json conversion of this GGUF drops SmolLM's split-digits rule, so tokenizer truth comes
from llama.cpp and transformers only runs the model on those ids. qrag's `--quant fp32` on the same GGUF must
reproduce every token (tests/model/gguf_smollm2_test.cc, GgufSmolLm2.Fp32GreedyEqualsTransformers).

Reference tools are not installed by CI. To regenerate:
  python3 -m venv /tmp/tf && /tmp/tf/bin/pip install torch transformers gguf sentencepiece
  python3 -m venv /tmp/lc && /tmp/lc/bin/pip install llama-cpp-python==0.3.36
  /tmp/tf/bin/python tests/model/make_smollm2_greedy_gold.py ~/.cache/qrag/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
      --llama-python /tmp/lc/bin/python
"""
import argparse
import json
import os
import subprocess

import torch
import transformers

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is 17 + 25?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWrite a haiku about the sea."
    "<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colours are",
    "Water boils at 100 degrees Celsius, which is",
    "In 1969, Neil Armstrong",
    "Photosynthesis is the process by which",
    "<|im_start|>user\nTranslate to French: Good morning, how are you?<|im_end|>\n<|im_start|>assistant\n",
    "A list of fruits: apple, banana,",
    "The quick brown fox",
]

TOKENIZE = r'''
import json, sys
import llama_cpp
path, prompts = sys.argv[1], json.loads(sys.stdin.read())
llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
print(json.dumps([llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--llama-python", required=True)
    ap.add_argument("--tokens", type=int, default=48)
    a = ap.parse_args()
    r = subprocess.run([a.llama_python, "-c", TOKENIZE, a.gguf], input=json.dumps(PROMPTS), capture_output=True,
                       text=True, check=True)
    prompt_ids = json.loads(r.stdout.strip().splitlines()[-1])
    torch.set_num_threads(2)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(a.gguf)), gguf_file=os.path.basename(a.gguf), torch_dtype=torch.float32)
    model.eval()
    cases = []
    with torch.no_grad():
        for prompt, ids in zip(PROMPTS, prompt_ids):
            out = model.generate(torch.tensor([ids]), max_new_tokens=a.tokens, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)
            cases.append({"prompt": prompt, "prompt_ids": ids, "output_ids": out[0, len(ids):].tolist()})
    dest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "gguf", "smollm2_greedy_gold.json")
    with open(dest, "w", encoding="utf-8") as f:
        f.write(json.dumps({"generator": "tests/model/make_smollm2_greedy_gold.py", "model": os.path.basename(a.gguf),
                            "transformers": transformers.__version__, "torch": torch.__version__,
                            "tokens": a.tokens})[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n]}\n")
    print(f"wrote {len(cases)} cases to {dest}")


if __name__ == "__main__":
    main()
