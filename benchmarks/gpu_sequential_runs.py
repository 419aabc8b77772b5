"""GPU check of what `ethsft tune` does with the 12GB preset: several trainings in one process, each compiling its
decoder layers and capturing its own CUDA graphs (tiny embedded model, different LoRA rank and dropout each run,
as tune's trials differ). Prints one line per run; exits 1 on a failure.
Usage (repo root, GPU): python benchmarks/gpu_sequential_runs.py DATASET_DIR"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import torch

from ethsft.config.schema import load_settings
from ethsft.training.recipe import build_trainer

PRESET = Path(__file__).resolve().parents[1] / "configs" / "training_config.yaml"


def main(dataset: str) -> int:
    for i, (r, dropout) in enumerate([(16, 0.05), (8, 0.0), (32, 0.1)]):
        s = load_settings(PRESET, {
            "model.base_model": "embedded:tiny-mistral", "data.dataset_dir": dataset, "data.max_length": 1024,
            "training.max_steps": 3, "training.output_dir": f"/tmp/ethsft-sequential/run{i}",
            "training.overwrite": True, "lora.r": r, "lora.dropout": dropout, "logging.eval_steps": 1000,
            "logging.save_strategy": "no", "logging.load_best_model_at_end": False})
        prepared = None
        try:
            prepared = build_trainer(s)
            prepared.trainer.train()
            graphs = prepared.trainer.ethsft_graphs
            print(f"run {i} OK: r {r}, dropout {dropout}, {graphs.replays} graph replays, {graphs.eager} eager")
        except Exception as e:
            print(f"run {i} FAILED: r {r}, dropout {dropout}: {e!r}")
            return 1
        finally:
            del prepared
            gc.collect()
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
