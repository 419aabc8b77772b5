"""Does the fast path learn what the guide's settings learn? Eval loss at the same tokens seen, over seeds.

Each mode of ``ethsft bench`` (``--modes``, same knobs) trains one epoch over the same synth training split (every
sample seen once: the same tokens), for each seed. Then one evaluation, the same for every mode: each validation
record unpacked, alone, as training renders it (``ethsft.data.formatting.render``), token-weighted mean NLL over its
completion tokens. The report gives each mode's mean and spread over seeds and how far each mode's mean lies from
the first mode's, in units of the seed-to-seed spread.

Usage: python benchmarks/eval_parity.py --shape tiny-mistral --modes "a:accum=16,b" --seeds 0,1,2 --out parity.json
(CPU, ~1 min a run on 2 cores with the tiny model); on a GPU: --shape mistral-7b.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from ethsft.experiments import bench
from ethsft.data.formatting import render


def eval_nll(model, rendered: list) -> float:
    """Token-weighted mean NLL over the completion tokens of ``rendered`` records, one record a forward pass."""
    device = next(p.device for p in model.parameters())
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for r in rendered:
            ids = torch.tensor([r.input_ids], device=device)
            labels = torch.tensor(r.labels[1:], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
            total += nll.item()
            count += int((labels != -100).sum())
    return total / count


def run(name: str, knobs: dict, shape: str, dataset: Path, seed: int, sets: list[str], work: Path,
        records: list[dict], rendered: list | None) -> tuple[dict, list]:
    """Train one mode one epoch and score it; ``rendered``: the validation records as training renders them
    (made here with the run's tokenizer the first time)."""
    sets = [*sets, f"training.seed={seed}", "training.num_train_epochs=1"]
    prepared, _, plan = bench.build_mode(name, knobs, shape, dataset, -1, 12.0, work, tuple(sets))
    trainer = prepared.trainer
    trainer.train()
    if rendered is None:
        rendered = [render(record, trainer.processing_class) for record in records]
    loss = eval_nll(trainer.model, rendered)
    res = {"mode": name, "seed": seed, "eval_nll": loss, "optimizer_steps": trainer.state.global_step,
           "tokens_seen": trainer.state.num_input_tokens_seen, "checkpointed": plan.get("checkpointed")}
    print(json.dumps(res), flush=True)
    del prepared, trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return res, rendered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="tiny-mistral")
    ap.add_argument("--modes", default="a:accum=16,b")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--samples", type=int, default=600, help="synth transactions (80%% train, 10%% validation)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="config overrides for every mode (e.g. training.learning_rate=2e-3)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ethsft-parity-"))
    dataset = bench.prepare_data(work, args.samples)
    records = [json.loads(line) for line in (dataset / "validation.jsonl").read_text().splitlines() if line.strip()]
    modes = bench.parse_modes(args.modes)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, rendered = [], None
    for seed in seeds:
        for name, knobs in modes:
            res, rendered = run(name, knobs, args.shape, dataset, seed, args.sets, work, records, rendered)
            runs.append(res)
    summary = {}
    for name, _ in modes:
        losses = [r["eval_nll"] for r in runs if r["mode"] == name]
        summary[name] = {"mean": statistics.mean(losses), "stdev": statistics.stdev(losses) if len(losses) > 1 else 0.0,
                         "runs": losses}
    ref = modes[0][0]
    spread = max(v["stdev"] for v in summary.values())
    for name, v in summary.items():
        v["minus_first"] = v["mean"] - summary[ref]["mean"]
        v["in_seed_spreads"] = v["minus_first"] / spread if spread else None
    report = {"shape": args.shape, "modes": args.modes, "seeds": seeds, "sets": args.sets,
              "validation_records": len(records), "summary": summary, "runs": runs}
    print(f"\neval NLL on {len(records)} validation records, one epoch each, seeds {seeds}:")
    for name, v in summary.items():
        ratio = "" if v["in_seed_spreads"] is None else f" ({v['in_seed_spreads']:+.2f} seed spreads)"
        print(f"  {name:<24} {v['mean']:.4f} ± {v['stdev']:.4f}   {v['minus_first']:+.4f} vs {ref}{ratio}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
