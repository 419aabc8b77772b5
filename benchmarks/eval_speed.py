"""Batched evaluation vs a one-at-a-time loop on the same samples: samples/s for both.

    python benchmarks/eval_speed.py --model-shape tiny --out bench_cpu.json                 # CPU, a minute
    python benchmarks/eval_speed.py --model-shape mistral-7b --out bench_gpu.json           # GPU, 4-bit

The model has random weights (built once under $ETHSFT_CACHE by ethsft.model.embedded.build_model): speed does not
depend on the weights, and random weights rarely emit EOS, so both loops generate exactly --max-new-tokens
per sample (``min_new_tokens`` pins it) and the comparison is like for like. Prompts are real transactions
from ethsft.eth.synth (or the test-suite-style generator when ethsft.eth is absent), rendered with the
training chat template.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
SHAPES = {"tiny": "tiny-mistral", "mistral-7b": "mistral-7b"}


def sample_records(n: int, seed: int = 0) -> tuple[list[dict], str]:
    """n records and where they came from: ethsft.eth.synth transactions, else short generic ones."""
    from ethsft.inference.loading import INSTRUCTION

    try:
        from ethsft.eth.intent import dumps, label
        from ethsft.eth.synth import generate_rows
        from ethsft.eth.tx import model_input, normalize

        records = []
        for row in generate_rows(n * 2, seed=seed):
            try:
                tx = normalize(row)
                records.append({"instruction": INSTRUCTION, "output": dumps(label(tx)),
                                "input": json.dumps(model_input(tx), separators=(",", ":"))})
            except ValueError:
                continue
            if len(records) == n:
                return records, "ethsft.eth.synth"
    except ImportError as e:  # ethsft.eth needs eth-abi
        print(f"ethsft.eth unavailable ({e}): using short generic transactions", file=sys.stderr)
    rng = random.Random(seed)
    return [{"instruction": INSTRUCTION, "output": json.dumps({"action": "transfer", "status": "success"}),
             "input": json.dumps({"from": "0x%040x" % rng.getrandbits(160), "to": "0x%040x" % rng.getrandbits(160),
                                  "value": str(rng.randint(0, 10**6) / 1000), "function": "transfer"})}
            for _ in range(n)], "generic (ethsft.eth unavailable)"


def model_path(shape: str) -> str:
    from ethsft.model import embedded

    target = embedded.cache_root() / "models" / SHAPES[shape]
    if not (target / "config.json").exists():
        print(f"building a random {SHAPES[shape]} model in {target} (once)...", file=sys.stderr)
        embedded.build_model(target, SHAPES[shape])
    return str(target)


def timed(fn) -> tuple[float, object]:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--samples", type=int, default=64, help="Samples for the batched run.")
    parser.add_argument("--sequential-samples", type=int, default=None,
                        help="Samples for the one-at-a-time loop (default: all; fewer saves time on 7B).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--load-in-4bit", action=argparse.BooleanOptionalAction, default=None,
                        help="Default: on for mistral-7b, off for tiny.")
    parser.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)

    import torch

    from ethsft.data.formatting import prompt_messages
    from ethsft.evaluation.generation import generate_ids, prompt_ids
    from ethsft.inference.loading import load_for_inference
    from ethsft.units import GiB

    four_bit = args.load_in_4bit if args.load_in_4bit is not None else args.model_shape == "mistral-7b"
    loaded = load_for_inference(model_path(args.model_shape), load_in_4bit=four_bit)
    records, source = sample_records(args.samples)
    prompts = [prompt_ids(loaded.tokenizer, prompt_messages(r)) for r in records]
    n_seq = min(args.sequential_samples or len(prompts), len(prompts))
    pin = dict(min_new_tokens=args.max_new_tokens)  # random weights: same token count in both loops

    def run(batch: list[list[int]], batch_size: int):
        return generate_ids(loaded.model, loaded.tokenizer, batch, args.max_new_tokens, batch_size, **pin)

    run(prompts[:2], 2)  # warm-up: kernels, allocator, 4-bit dequant paths
    batched_s, batched = timed(lambda: run(prompts, args.batch_size))
    sequential_s, sequential = timed(lambda: [run([p], 1)[0] for p in prompts[:n_seq]])
    same = sum(a == b for a, b in zip(batched[:n_seq], sequential))
    result = {
        "model_shape": args.model_shape, "load_in_4bit": four_bit, "dtype": str(next(loaded.model.parameters()).dtype),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "prompts": source, "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1),
        "batched": {"samples": len(prompts), "seconds": round(batched_s, 3),
                    "samples_per_s": round(len(prompts) / batched_s, 3),
                    "new_tokens_per_s": round(sum(map(len, batched)) / batched_s, 1)},
        "sequential": {"samples": n_seq, "seconds": round(sequential_s, 3),
                       "samples_per_s": round(n_seq / sequential_s, 3),
                       "new_tokens_per_s": round(sum(map(len, sequential)) / sequential_s, 1)},
        "identical_outputs": f"{same}/{n_seq}",
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / GiB, 2) if torch.cuda.is_available() else None,
    }
    result["speedup"] = round(result["batched"]["samples_per_s"] / result["sequential"]["samples_per_s"], 2)
    print(f"\nEvaluation speed: {args.model_shape}{' (4-bit)' if four_bit else ''} on {result['device']}, "
          f"{args.max_new_tokens} new tokens per sample, prompts ~{result['prompt_tokens_mean']:.0f} tokens")
    print(f"{'mode':<22}{'samples':>8}{'seconds':>10}{'samples/s':>11}{'tokens/s':>10}")
    for name, key in ((f"batched (batch {args.batch_size})", "batched"), ("one at a time", "sequential")):
        r = result[key]
        print(f"{name:<22}{r['samples']:>8}{r['seconds']:>10.2f}{r['samples_per_s']:>11.2f}{r['new_tokens_per_s']:>10.1f}")
    print(f"speedup: {result['speedup']}x   identical greedy outputs: {result['identical_outputs']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
