"""ethsft estimate: shapes, token counts with the model's tokenizer, steps, memory verdicts, the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import REPO, tiny_settings
from ethsft.config.schema import ConfigError, load_settings
from ethsft.planning.advice import fit_verdict
from ethsft.planning.estimate import estimate_run
from ethsft.planning.hardware import GPU, GPUS, named_gpu
from ethsft.planning.memory import estimate_memory
from ethsft.planning.shapes import BUILTIN_SHAPES, model_shape
from ethsft.planning.stats import dataset_stats, expected_batch_max, pack_rows
from ethsft.cli.ops import estimate as estimate_cmd

# The guide's own 12GB layout (batch 1 x accumulation 16, 2048-token samples, full checkpointing): the default
# 12GB preset packs rows for the fast path instead.
PRESET_12GB = REPO / "configs" / "guide_12gb.yaml"


def test_mistral_7b_shape_offline_has_the_real_parameter_count():
    s = load_settings(PRESET_12GB)  # a hub id: the built-in table answers, no network
    shape = model_shape(s)
    assert shape.source == "built-in table"
    assert shape.total_params == 7_241_732_096  # Mistral-7B-v0.1/v0.2
    assert model_shape(load_settings(PRESET_12GB, {"model.base_model": "embedded:mistral-7b"})).total_params \
        == 7_241_732_096
    assert BUILTIN_SHAPES["meta-llama/llama-2-13b-chat-hf"].total_params == 13_015_864_320


def test_local_config_json_is_read(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000}))
    shape = model_shape(load_settings(PRESET_12GB, {"model.base_model": str(tmp_path)}))
    assert (shape.hidden, shape.kv_dim, shape.vocab, shape.source) == (64, 32, 1000, str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(ConfigError, match="config.json lacks"):
        model_shape(load_settings(PRESET_12GB, {"model.base_model": str(tmp_path)}))


def test_token_counts_equal_the_tokenizers(small_dataset, tmp_path, tokenizer):
    from ethsft.data.records import read_records, tokenize_split
    from ethsft.data.formatting import render

    s = tiny_settings(small_dataset, tmp_path / "out")
    stats = dataset_stats(s)
    assert set(stats.splits) == {"train", "validation", "test"} and stats.exact and not stats.notes
    for name, split in stats.splits.items():
        records = read_records(small_dataset / f"{name}.jsonl")
        expected = [len(render(r, tokenizer).input_ids) for r in records]
        assert split.lengths == expected
        _, report = tokenize_split(records, tokenizer, s.data.max_length, "truncate", None, name)
        assert split.lengths == report.lengths  # what training sees
        assert split.completion == [sum(render(r, tokenizer).loss_mask) for r in records]
    # the raw chat-template count, independent of ethsft's renderer
    first = read_records(small_dataset / "train.jsonl")[0]
    msgs = [{"role": "user", "content": f"{first['instruction']}\n\n{first['input']}"},
            {"role": "assistant", "content": first["output"]}]
    ids = tokenizer.apply_chat_template(msgs, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert stats.splits["train"].lengths[0] == len(ids)


def test_7b_config_offline_counts_with_the_identical_mistral_tokenizer(small_dataset, tokenizer):
    from ethsft.data.records import read_records
    from ethsft.data.formatting import render

    s = load_settings(PRESET_12GB, {"data.dataset_dir": str(small_dataset)})
    stats = dataset_stats(s)
    assert stats.exact and "identical Mistral v1 tokenizer" in stats.notes[0]
    records = read_records(small_dataset / "train.jsonl")
    assert stats.splits["train"].lengths == [len(render(r, tokenizer).input_ids) for r in records]


def test_steps_match_what_the_trainer_runs(small_dataset, tmp_path):
    s = tiny_settings(small_dataset, tmp_path / "out")  # 16 samples, micro 4, accumulation 1, 1 epoch
    est = estimate_run(s, named_gpu("rtx3060"), dataset_stats(s))
    assert (est.samples, est.steps_per_epoch, est.total_steps) == (16, 4, 4)  # test_train: global_step == 4
    s = tiny_settings(small_dataset, tmp_path / "out", "training.per_device_train_batch_size=3",
                      "training.gradient_accumulation_steps=2", "training.num_train_epochs=3")
    est = estimate_run(s, None, dataset_stats(s))
    assert (est.micro_batches_per_epoch, est.steps_per_epoch, est.total_steps) == (6, 3, 9)


def test_overlong_policy_and_packing_change_what_is_counted(small_dataset, tmp_path):
    s = tiny_settings(small_dataset, tmp_path / "out", "data.max_length=60", "data.overlong=drop")
    stats = dataset_stats(s)
    train = stats.splits["train"]
    kept = [n for n in train.lengths if n <= 60]
    assert 0 < train.overlong == 16 - len(kept) and train.trained_lengths() == kept
    assert pack_rows([5, 4, 3, 3, 2, 2, 1], 6) == [6, 6, 6, 2]  # best fit decreasing
    assert pack_rows([9, 2], 6) == [6, 2]  # truncated, never split
    assert expected_batch_max([1, 2], 2) == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert expected_batch_max([3, 5], 1) == 4


def test_memory_grows_with_tokens_and_checkpointing_saves_it():
    s = load_settings(PRESET_12GB)
    shape = model_shape(s)
    m1 = estimate_memory(s, shape, 1024, 1)
    m2 = estimate_memory(s, shape, 2048, 1)
    assert m2.parts["activations"] == pytest.approx(2 * m1.parts["activations"])
    assert m1.parts["base weights"] == m2.parts["base weights"] == pytest.approx(3.84, abs=0.01)
    no_ckpt = load_settings(PRESET_12GB, sets=["optimization.gradient_checkpointing=false"])
    assert estimate_memory(no_ckpt, shape, 2048, 1).parts["activations"] > 5 * m2.parts["activations"]


def test_absurd_config_on_rtx3060_wont_fit_and_says_what_to_change():
    s = load_settings(PRESET_12GB, sets=["data.max_length=32768"])
    gpu = named_gpu("rtx3060")
    verdict = fit_verdict(s, gpu, estimate_run(s, gpu))
    assert verdict == ("won't fit: needs ~21.1 GB of 11.8 GB — try --set data.max_length=8192 (~9.1 GB), "
                       "or the configs/training_config.yaml preset")
    fixed = load_settings(PRESET_12GB, sets=["data.max_length=8192"])
    assert fit_verdict(fixed, gpu, estimate_run(fixed, gpu)).startswith("fits: ~9.1 GB of 11.8 GB")


def test_wont_fit_walks_the_guides_ladder_down_to_checkpointing():
    """The estimate suggests what the OOM message does, in the guide's order: max_length first."""
    s = load_settings(PRESET_12GB, sets=["optimization.gradient_checkpointing=false",
                                         "training.per_device_train_batch_size=2"])
    gpu = named_gpu("rtx4090")
    verdict = fit_verdict(s, gpu, estimate_run(s, gpu))
    assert verdict == ("won't fit: needs ~27.7 GB of 24.0 GB — try --set data.max_length=1024 (~16.4 GB), or the "
                       "configs/24gb.yaml preset")
    # max_length and r at their floor: the micro batch goes down to 1, then checkpointing comes on
    floor = load_settings(PRESET_12GB, sets=["optimization.gradient_checkpointing=false", "data.max_length=512",
                                             "lora.r=8", "training.per_device_train_batch_size=4"])
    card = GPU("8gb", "an 8 GB card", 7.6, 20.0, 300)
    assert fit_verdict(floor, card, estimate_run(floor, card)).startswith(
        "won't fit: needs ~16.3 GB of 7.6 GB — try --set training.per_device_train_batch_size=1 --set "
        "training.gradient_accumulation_steps=64 --set optimization.gradient_checkpointing=true (~5.3 GB)")


def test_named_gpus_and_errors():
    assert {"rtx3060", "rtx4090", "a100", "h100"} <= set(GPUS)
    assert named_gpu("RTX4090").vram_gib == pytest.approx(23.99)
    with pytest.raises(ConfigError, match="unknown GPU 'gtx1080'; choose one of: rtx3060"):
        named_gpu("gtx1080")


def test_time_scales_with_gpu_speed(small_dataset):
    s = load_settings(PRESET_12GB, {"data.dataset_dir": str(small_dataset)})
    stats = dataset_stats(s)
    slow = estimate_run(s, named_gpu("rtx3060"), stats)
    fast = estimate_run(s, named_gpu("h100"), stats)
    assert slow.total_steps == fast.total_steps == 3  # 16 samples / (1 x 16) x 3 epochs
    # short samples: the H100 waits on the host (3 passes x 32 layers x (5.0 ms + 2 adapters x 0.47 ms)), the
    # RTX 3060 on its FLOPs
    assert fast.time.bound == "host-bound" and fast.time.micro_step_s == pytest.approx(0.57024)
    assert fast.time.step_s == pytest.approx(16 * 0.57024 + 0.018 + 0.000115 * 128)
    assert slow.time.bound == "GPU-bound" and slow.train_s > 2 * fast.train_s > 0
    # long micro-batches are GPU-bound on both: time scales with TFLOPs (989 / 25.6) and bandwidth (dequant)
    long = load_settings(PRESET_12GB, sets=["data.max_length=8192"])
    slow, fast = estimate_run(long, named_gpu("rtx3060")).time, estimate_run(long, named_gpu("h100")).time
    assert fast.bound == slow.bound == "GPU-bound"
    assert (slow.micro_step_s, fast.micro_step_s) == (pytest.approx(81.37509, rel=1e-6), pytest.approx(2.130096, rel=1e-6))


def test_cli_estimate_on_cpu(small_dataset):
    result = CliRunner().invoke(estimate_cmd, ["--config", str(PRESET_12GB), "--dataset", str(small_dataset),
                                               "--gpu", "rtx3060"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Model: mistralai/Mistral-7B-Instruct-v0.2 (7.24B params" in out
    assert "note: mistralai/Mistral-7B-Instruct-v0.2's tokenizer is not available here" in out
    assert "  train           16 samples" in out
    assert "Steps: 16 samples / (1 micro x 16 accumulation x 1 process) = 1 steps per epoch; 3 steps in all" in out
    assert "GPU: NVIDIA GeForce RTX 3060 12GB (named): 11.8 GB" in out
    assert "Fit: fits: ~" in out and "Time: " in out
    j = CliRunner().invoke(estimate_cmd, ["--config", str(PRESET_12GB), "--dataset", str(small_dataset),
                                          "--gpu", "h100", "--json"])
    data = json.loads(j.output)
    assert data["splits"]["train"]["samples"] == 16 and data["total_steps"] == 3 and data["fits"] is True
    bad = CliRunner().invoke(estimate_cmd, ["--config", str(PRESET_12GB), "--gpu", "gtx1080"])
    assert bad.exit_code == 1 and "unknown GPU 'gtx1080'" in bad.output


def test_fast_path_presets_match_what_the_h100_measured():
    """The fast path's activation model and rate against the H100 bench runs they were taken from. The 12GB
    preset's layout at 12 GiB (b, benchmarks/results/bench_compiled_graphs_h100_2026-11-26.json): 11.5 GiB allocated with no
    layer checkpointed at 14,787 tok/s; as shipped (11 GiB, b:vram=11): 10.2 GiB, 6 layers checkpointed, 13,632
    tok/s; without compiled layers (bench_graphs_h100_2026-11-25.json): 10.96 GiB at ~14,700 tok/s; b80 (the 80GB preset's
    layout, not compiled) at 54.9 GiB; the 80GB preset as shipped (compiled) 63.3 GiB on the H200
    (bench_fastpath_presets_first_h200_2026-12-03.json)."""
    from ethsft.planning.speed import GRAPH_HOST_S

    h100 = named_gpu("h100")
    preset = REPO / "configs" / "training_config.yaml"
    b = estimate_run(load_settings(preset, {"optimization.vram_budget_gib": 12}), h100)
    assert b.memory.peak_allocated_gib == pytest.approx(11.5, rel=0.03) and b.memory.checkpointed == 0
    assert b.time.bound == "GPU-bound" and b.time.host_s == GRAPH_HOST_S
    assert b.time.tokens_per_s == pytest.approx(14_787, rel=0.1)  # worst case: attention over whole rows
    eager = estimate_run(load_settings(preset, {"optimization.vram_budget_gib": 12, "optimization.compile": False}),
                         h100)
    assert eager.memory.peak_allocated_gib == pytest.approx(10.96, rel=0.03)
    assert eager.time.tokens_per_s == pytest.approx(14_700, rel=0.1)
    shipped = estimate_run(load_settings(preset), h100)
    assert shipped.memory.peak_allocated_gib == pytest.approx(10.2, rel=0.05)
    assert 0 < shipped.memory.checkpointed < 0.5  # its 11 GiB budget checkpoints a few layers (6 of 32 measured)
    assert shipped.time.tokens_per_s == pytest.approx(13_632, rel=0.1) and shipped.time.tokens_per_s < b.time.tokens_per_s
    s80 = load_settings(REPO / "configs" / "80gb.yaml")
    b80 = estimate_run(s80, h100)
    assert b80.memory.peak_allocated_gib == pytest.approx(63.3, rel=0.05)
    eager80 = estimate_run(load_settings(REPO / "configs" / "80gb.yaml", {"optimization.compile": False}), h100)
    assert eager80.memory.peak_allocated_gib == pytest.approx(54.9, rel=0.03)
    assert b80.memory.checkpointed is None and fit_verdict(s80, h100, b80).startswith("fits")
