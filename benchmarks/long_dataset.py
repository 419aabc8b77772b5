"""Pad the inputs of a prepared dataset so every sample is close to N tokens: the worst case for peak memory.

    python benchmarks/long_dataset.py --dataset data/datasets --output data/datasets-2048 --tokens 2048
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click


@click.command()
@click.option("--dataset", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--output", required=True, type=click.Path(file_okay=False))
@click.option("--tokens", default=2048, show_default=True)
def main(dataset: str, output: str, tokens: int) -> None:
    from ethsft.model.embedded import build_tokenizer
    from ethsft.data.formatting import render

    tok = build_tokenizer()
    rng = random.Random(0)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        src = Path(dataset) / f"{split}.jsonl"
        if not src.exists():
            continue
        rows, lengths = [], []
        for line in src.read_text().splitlines():
            rec = json.loads(line)
            tx = json.loads(rec["input"])
            # event logs as raw hex: long, incompressible, and shaped like real receipts
            tx["logs"] = "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(2 * tokens))
            while True:
                rec["input"] = json.dumps(tx, separators=(",", ":"))
                n = len(render(rec, tok).input_ids)
                if n <= tokens:
                    break
                # a hex digit is at most one token: trimming the excess in digits converges from above
                tx["logs"] = tx["logs"][: len(tx["logs"]) - max(1, n - tokens)]
            rows.append(json.dumps(rec))
            lengths.append(n)
        (out / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
        click.echo(f"{split}: {len(rows)} samples of {min(lengths)}..{max(lengths)} tokens")


if __name__ == "__main__":
    main()
