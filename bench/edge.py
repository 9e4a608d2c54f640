"""Edge-tier benchmark: load time cold/cached and decode speed fp32 vs int8 on CPU, bf16 on CUDA.

The baseline, measured in the same run on the same GGUF, prompt and token budget, is llama.cpp
(llama-cpp-python) decoding the GGUF directly, as the mobile tier does. Prints one JSON object.

    .venv/bin/python bench/edge.py [--gguf FILE] [--max-tokens 64] [--repeats 3] [--threads 1]

Threads default to 1 for both runtimes: on a shared, loaded machine two torch intra-op threads
spin-wait on each other and decode ~10x slower than one (measured here: 1.0 vs 17.8 tokens/s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tierflow.runtimes.config import TierConfig
from tierflow.runtimes.edge import EdgeChatModel, build_edge
from tierflow.runtimes.mobile import shipped_model_path

PROMPT = "Write a long story about a robot who learns to paint."
BATCH_PROMPTS = [PROMPT, "Explain how rain forms.", "Describe a busy market.", "Tell me about the moon.",
                 "List some uses of copper.", "Why do cats purr?", "How does a bicycle work?", "Describe autumn."]


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _edge_speed(model: EdgeChatModel, max_tokens: int, repeats: int) -> dict[str, Any]:
    """Median decode speed of the chat model (prompt included in the time, as a caller sees it)."""
    model.invoke(PROMPT, max_tokens=4)  # warm-up: first-call allocations and kernel selection
    rates, tokens = [], []
    for _ in range(repeats):
        reply, seconds = _timed(lambda: model.invoke(PROMPT, max_tokens=max_tokens))
        n = int(reply.usage_metadata["output_tokens"])
        rates.append(n / seconds)
        tokens.append(n)
    return {"tokens_per_s": statistics.median(rates), "output_tokens": tokens, "runs": repeats}


def _llamacpp_speed(gguf: Path, threads: int, max_tokens: int, repeats: int) -> dict[str, Any]:
    from llama_cpp import Llama

    llm, load_s = _timed(lambda: Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, seed=0, verbose=False))
    messages = [{"role": "user", "content": PROMPT}]
    llm.create_chat_completion(messages, max_tokens=4, temperature=0)
    rates, tokens = [], []
    for _ in range(repeats):
        reply, seconds = _timed(lambda: llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0))
        n = int(reply["usage"]["completion_tokens"])
        rates.append(n / seconds)
        tokens.append(n)
    return {"load_s": load_s, "tokens_per_s": statistics.median(rates), "output_tokens": tokens, "runs": repeats,
            "threads": threads}


def _cuda_batch_speed(model: EdgeChatModel, batch: int, max_tokens: int, repeats: int) -> float:
    """Generated tokens per second over a left-padded batch of prompts, every row forced to max_tokens."""
    import torch

    tokenizer = model.tokenizer
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=False) for p in (BATCH_PROMPTS * batch)[:batch]]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run() -> None:
        with torch.inference_mode():
            model.hf_model.generate(**encoded, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                    do_sample=False, pad_token_id=pad)
        torch.cuda.synchronize()

    run()
    rates = [batch * max_tokens / _timed(run)[1] for _ in range(repeats)]
    return statistics.median(rates)


def measure(gguf: Path | None = None, *, max_tokens: int = 64, repeats: int = 3, threads: int | None = 1,
            cache: Path | None = None) -> dict[str, Any]:
    """Run the whole edge benchmark and return its figures (what ``bench/edge.py`` prints).

    ``cache`` defaults to a fresh temporary directory so the cold load really converts, and is removed
    afterwards; ``threads`` sets torch's and llama.cpp's thread counts (None: leave torch's as it is).
    """
    import torch

    gguf = gguf or shipped_model_path()
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    own_cache = cache is None
    root = Path(tempfile.mkdtemp(prefix="tierflow-edge-bench-")) if cache is None else cache
    load_before = os.getloadavg()
    try:
        cpu = {"device": "cpu", "max_tokens": 2047, "n_ctx": 2048, "timeout_s": 600, "model_path": str(gguf)}
        _, cold_s = _timed(lambda: build_edge("edge", TierConfig(kind="torch", quantize="none", **cpu), cache=root))
        fp32, cached_s = _timed(lambda: build_edge("edge", TierConfig(kind="torch", quantize="none", **cpu),
                                                   cache=root))
        int8, cached_int8_s = _timed(lambda: build_edge("edge", TierConfig(kind="torch", quantize="int8", **cpu),
                                                        cache=root))
        fp32_speed = _edge_speed(fp32, max_tokens, repeats)
        int8_speed = _edge_speed(int8, max_tokens, repeats)
        del fp32, int8
        llamacpp = _llamacpp_speed(gguf, threads, max_tokens, repeats)
        if torch.cuda.is_available():
            gpu = build_edge("edge", TierConfig(kind="torch", device="cuda", max_tokens=2047, n_ctx=2048,
                                                timeout_s=600, model_path=str(gguf)), cache=root)
            cuda: dict[str, Any] = {
                "measured": True, "device": torch.cuda.get_device_name(), "dtype": gpu.dtype,
                "batch1_tokens_per_s": _cuda_batch_speed(gpu, 1, max_tokens, repeats),
                "batch8_tokens_per_s": _cuda_batch_speed(gpu, 8, max_tokens, repeats),
                "chat_model_tokens_per_s": _edge_speed(gpu, max_tokens, repeats)["tokens_per_s"],
            }
            cuda["batch8_vs_batch1"] = cuda["batch8_tokens_per_s"] / cuda["batch1_tokens_per_s"]
        else:
            cuda = {"measured": False, "reason": "no GPU on this machine"}
    finally:
        if own_cache:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "model": gguf.name,
        "max_tokens": max_tokens,
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
                    "python": platform.python_version(), "loadavg_before": load_before[0],
                    "loadavg_after": os.getloadavg()[0]},
        "load": {"cold_convert_s": cold_s, "cached_fp32_s": cached_s, "cached_int8_s": cached_int8_s},
        "cpu": {"fp32": fp32_speed, "int8": int8_speed},
        "baseline_llamacpp": llamacpp,
        "cuda": cuda,
        "ratios": {
            "cached_vs_cold_load": cached_s / cold_s,
            "int8_vs_fp32_tokens_per_s": int8_speed["tokens_per_s"] / fp32_speed["tokens_per_s"],
            "fp32_vs_llamacpp_tokens_per_s": fp32_speed["tokens_per_s"] / llamacpp["tokens_per_s"],
            "int8_vs_llamacpp_tokens_per_s": int8_speed["tokens_per_s"] / llamacpp["tokens_per_s"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF to convert (default: the shipped SmolLM2)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads (0: torch's default)")
    parser.add_argument("--cache", type=Path, default=None, help="cache root to use (default: a fresh temp dir)")
    args = parser.parse_args()
    print(json.dumps(measure(args.gguf, max_tokens=args.max_tokens, repeats=args.repeats, threads=args.threads or None,
                             cache=args.cache), indent=2))


if __name__ == "__main__":
    main()
