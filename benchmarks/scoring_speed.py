"""Scoring speed, today's path against the new one, in one run on the same records: samples/s of each, the ratio, and
whether the greedy answers are the same.

    python benchmarks/scoring_speed.py --model runs/demo/adapter --dataset runs/demo/datasets/test.jsonl \
        --limit 20 --batch-size 10 --dtype bfloat16 --out benchmarks/results/scoring_speed_cpu2_2026-12-08.json
    python benchmarks/scoring_speed.py --model $RUN/adapter --dataset $RUN/data/ds/test.jsonl --limit 500 \
        --batch-size 128 --load-in-4bit --static --out $OUT/scoring_speed_h100_<date>.json          # GPU

Paths ("variants"), each loaded once and run ``--rounds`` times, interleaved (old, new, old, new, ...) so that a
machine shared with other work slows both alike:

* ``old``: scoring as it was: base and LoRA kept apart (a 4-bit base dequantised at every step), fp32 on CPU whatever
  ``--dtype`` says, each answer cut once it cannot be a JSON object.
* ``new``: ``load_for_inference(merge=True)``: the adapter folded into ``--dtype`` weights; each answer also cut once
  text follows its closed object (``generation.JsonAnswerStop``; the score cannot change after that).
* ``static`` (``--static``): ``new`` with a static KV cache, which transformers compiles on CUDA (the first batch
  pays the compile; ``--rounds`` >= 2 shows the steady state).

Each round reports wall seconds and the process's CPU seconds (on a shared machine CPU time moves less than wall
time), and the 1-minute load average before and after. Answers are compared to ``old``'s token for token; any
difference is listed with both texts and whether its score differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def run_variant(loaded, records, args, **kwargs) -> tuple[dict, list[str]]:
    import torch

    from ethsft.data.formatting import prompt_messages
    from ethsft.evaluation.generation import answer_budget, generate_texts

    budget = answer_budget(loaded.tokenizer, [r["output"] for r in records])
    messages = [prompt_messages(r, loaded.system_prompt) for r in records]
    load_before = load_average()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    texts = generate_texts(loaded.model, loaded.tokenizer, messages, budget, args.batch_size, json_only=True, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "samples_per_s": round(len(records) / wall, 3),
            "samples_per_cpu_s": round(len(records) / cpu, 4), "load_before": load_before,
            "load_after": load_average()}, texts


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="adapter dir, model dir or embedded:smollm2-135m")
    parser.add_argument("--dataset", required=True, help="a test.jsonl (or a dataset folder)")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--dtype", default=None, help="bfloat16 | float16 | float32 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--load-in-4bit", action="store_true", help="the base in 4-bit, as the GPU recipe scores")
    parser.add_argument("--static", action="store_true", help="also the new path with a static KV cache")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="result JSON path")
    args = parser.parse_args(argv)

    import torch

    from ethsft.evaluation.evaluate import checked_records, references_of
    from ethsft.evaluation.metrics import compute_metrics, headline, parse_intent, score
    from ethsft.inference.loading import load_for_inference

    records = checked_records(args.dataset, args.limit)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    variants = {"old": (load_for_inference(args.model, args.load_in_4bit, dtype=dtype), {}),
                "new": (load_for_inference(args.model, args.load_in_4bit, dtype=dtype, merge=True), {})}
    if args.static:
        variants["static"] = (variants["new"][0], {"cache_implementation": "static"})
    rounds: dict[str, list[dict]] = {name: [] for name in variants}
    texts: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name, (loaded, kwargs) in variants.items():
            timing, out = run_variant(loaded, records, args, **kwargs)
            rounds[name].append(timing)
            texts.setdefault(name, out)
            if out != texts[name]:
                print(f"{name}: round {r + 1} answered differently from its round 1", file=sys.stderr)
            print(f"round {r + 1} {name:>6}: {timing}", flush=True)

    references = references_of(records)
    result = {"model": args.model, "dataset": args.dataset, "samples": len(records), "batch_size": args.batch_size,
              "dtype": args.dtype, "load_in_4bit": args.load_in_4bit, "rounds": args.rounds,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "date": str(date.today()),
              "variants": {}}
    for name, runs in rounds.items():
        best = min(runs, key=lambda t: t["wall_s"])
        predictions = [parse_intent(t) for t in texts[name]]
        differs = [i for i, (a, b) in enumerate(zip(texts["old"], texts[name])) if a != b]
        result["variants"][name] = {
            "rounds": runs, "best_samples_per_s": best["samples_per_s"],
            "best_samples_per_cpu_s": max(t["samples_per_cpu_s"] for t in runs),
            "metrics": headline(compute_metrics(references, predictions)),
            "same_answers_as_old": len(records) - len(differs),
            "differences": [{"record": i, "old": texts["old"][i], name: texts[name][i],
                             "score_differs": score(references[i], parse_intent(texts["old"][i])).to_dict()
                             != score(references[i], predictions[i]).to_dict()} for i in differs]}
    old = result["variants"]["old"]
    for name, v in result["variants"].items():
        v["speedup_wall"] = round(v["best_samples_per_s"] / old["best_samples_per_s"], 2)
        v["speedup_cpu"] = round(v["best_samples_per_cpu_s"] / old["best_samples_per_cpu_s"], 2)
        print(f"{name:>6}: {v['best_samples_per_s']:.3f} samples/s ({v['speedup_wall']}x old), "
              f"{v['best_samples_per_cpu_s']:.4f} samples per CPU-second ({v['speedup_cpu']}x), "
              f"{v['same_answers_as_old']}/{len(records)} answers as old, {v['metrics']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
