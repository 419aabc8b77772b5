"""`ethsft bench` on CPU with the tiny shape: every mode runs, the JSON and table come out."""

from __future__ import annotations

import json

import pytest
import torch

from ethsft.experiments import bench


def test_parse_modes():
    modes = dict(bench.parse_modes("a,a',b:attn=flex_attention;rows=4096;ckpt=8"))
    assert modes["a"]["packing"] == 0 and modes["a'"]["attn"] == "flex_attention"
    b = modes["b:attn=flex_attention;rows=4096;ckpt=8"]
    assert b["rows"] == 4096 and b["ckpt"] == "8" and b["path"] == "ethsft"
    with pytest.raises(ValueError):
        bench.parse_modes("z")
    with pytest.raises(ValueError):
        bench.parse_modes("b:colour=red")
    preset = dict(bench.parse_modes("16gb.yaml,80gb.yaml"))
    assert preset["16gb.yaml"]["card"] == 16 and preset["80gb.yaml"]["card"] == 80
    from ethsft.planning.hardware import card_cap_gib  # what bench caps each card's mode at

    assert [card_cap_gib(gb) for gb in (8, 12, 16, 80)] == [7.5, 11.5, 15.5, 79.5]
    with pytest.raises(ValueError, match="a preset takes only rows, batch, accum, vram, compile, graphs, card"):
        bench.parse_modes("16gb.yaml:attn=sdpa")
    with pytest.raises(ValueError, match="unknown preset 'nope.yaml'; the shipped presets: 16gb.yaml, 24gb.yaml"):
        bench.parse_modes("nope.yaml")


def test_b_on_trls_path_has_none_of_the_fast_path(tmp_path):
    """b:path=trl (eval_parity.py's control: TRL's packing, nothing of ethsft's fast path) must not keep b's CUDA
    graphs, which need the fast path (load_settings refused it)."""
    (name, knobs), = bench.parse_modes("b:rows=1800;accum=1;path=trl")
    s = bench.mode_settings(knobs, "tiny-mistral", tmp_path, tmp_path / "out", 3, 12.0)
    o = s.optimization
    assert (o.fast_path, o.cuda_graphs, o.compile, o.vram_budget_gib) == (False, False, False, None)
    assert s.data.max_length == 1800 and s.training.gradient_accumulation_steps == 1


def test_bits_16_leaves_the_base_weights_in_bf16_for_a_ceiling(tmp_path, ethsft_cache):
    """b:bits=16 (the fast path with no 4-bit dequantisation: a ceiling for measuring, not a preset) trains with
    the base weights as plain linears; the default stays NF4."""
    import bitsandbytes as bnb

    with pytest.raises(ValueError, match=r"mode 'b:bits=8': bits is 4 \(NF4\) or 16 \(bf16 weights\), not '8'"):
        bench.parse_modes("b:bits=8")
    modes = dict(bench.parse_modes("b:rows=512;ckpt=none,b:rows=512;ckpt=none;bits=16"))
    quant = {n: bench.mode_settings(k, "tiny-mistral", tmp_path, tmp_path / "out", 1, 12.0).quantization.load_in_4bit
             for n, k in modes.items()}
    assert quant == {"b:rows=512;ckpt=none": True, "b:rows=512;ckpt=none;bits=16": False}
    dataset = bench.prepare_data(tmp_path, 40)
    name = "b:rows=512;ckpt=none;bits=16"
    prepared, done, _ = bench.build_mode(name, modes[name], "tiny-mistral", dataset, 1, 12.0, tmp_path)
    model = prepared.trainer.model
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    prepared.trainer.train()
    after = dict(model.named_parameters())
    assert lora_b and all(not torch.equal(lora_b[n], after[n].detach()) for n in lora_b)
    assert done["lean_lora_dropout"] == 2 * 2


def test_flops_formula():
    from transformers import MistralConfig

    from ethsft.model.embedded import MISTRAL_7B_SHAPE

    cfg = MistralConfig(vocab_size=32000, **MISTRAL_7B_SHAPE)
    f = bench.flops_per_token(cfg, [500] * 10, 8192, 1.0)
    assert 7.0e9 < f["matmul_params"] < 7.3e9
    assert 28e9 < f["model_flops_per_token"] < 30e9          # ~4P: forward + input-gradient backward
    assert 42e9 < f["hardware_flops_per_token"] < 45e9       # + full recompute: the issue's ~45 GFLOP/token


def test_median_step_rate_is_the_steady_rate_one_slow_step_does_not_move():
    # the H200 run's a': three ~0.7 s steps of ~8.1k tokens and one 1.28 s step (cause not traced)
    steps, tokens = [0.689, 0.669, 0.731, 1.276], [8067, 8138, 8185, 8128]
    assert round(bench.median_step_rate(steps, tokens)) == 11453  # the window's mean: 9,665 tokens/s
    assert bench.median_step_rate([1.0, 2.0, 4.0], [100, 100, 100]) == 50.0
    assert bench.median_step_rate([], []) is None


# a' with sdpa: flex_attention has no CPU backward. Short rows: the tiny model's 32k-vocab logits dominate on CPU.
MODES = "a,a':attn=sdpa;rows=512,b:rows=512;ckpt=1,guide_12gb.yaml:accum=1;rows=512"


def test_bench_tiny_cpu(tmp_path, ethsft_cache):
    from click.testing import CliRunner

    from ethsft.cli.bench import main

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["--model-shape", "tiny-mistral", "--modes", MODES,
                                    "--steps", "1", "--warmup", "0", "--samples", "40", "--out", str(out),
                                    "--no-isolate"])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    modes = {m["mode"]: m for m in report["modes"]}
    for name in MODES.split(","):
        assert modes[name].get("tokens_per_s"), modes[name]
    for plain in ("a", "a':attn=sdpa;rows=512"):  # TRL's own path: none of the fast path, whatever the preset says
        assert modes[plain]["attn_implementation"] == "sdpa" and modes[plain]["fastpath"] == {}, modes[plain]
    assert modes["a"]["checkpointing"]["checkpointed"] == 2
    assert modes["b:rows=512;ckpt=1"]["attn_implementation"] == "ethsft_varlen"
    assert modes["b:rows=512;ckpt=1"]["fastpath"]["lean_lora_dropout"] == 2 * 2
    assert modes["b:rows=512;ckpt=1"]["fastpath"]["lean_mlp_layers"] == 2
    assert modes["b:rows=512;ckpt=1"]["checkpointing"]["checkpointed"] == 1
    assert modes["b:rows=512;ckpt=1"]["vs_a"] and modes["b:rows=512;ckpt=1"]["vs_a_prime"]
    b = modes["b:rows=512;ckpt=1"]  # one measured step: the median step is the window
    assert b["median_step_tokens_per_s"] == pytest.approx(b["tokens_per_s"], rel=1e-3)
    assert b["median_vs_a_prime"] == pytest.approx(b["median_step_tokens_per_s"]
                                                   / modes["a':attn=sdpa;rows=512"]["median_step_tokens_per_s"])
    assert "| mode |" in res.output and report["summary"]["b_over_a_prime"]
    # a preset trains as shipped but for the knobs given (guide_12gb.yaml: unpacked samples, every layer
    # checkpointed, TRL's path) and each mode carries its card's cap: the card's memory minus the CUDA context
    p = modes["guide_12gb.yaml:accum=1;rows=512"]
    assert p["knobs"]["rows"] == 512 and p["knobs"]["path"] == "trl" and p["checkpointing"]["checkpointed"] == 2
    assert p["knobs"]["given"] == {"accum": 1, "rows": 512}
    assert p["cap_gib"] == 11.5 and modes["a"]["cap_gib"] == 11.5
