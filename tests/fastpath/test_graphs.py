"""CUDA-graphed micro-batches (``ethsft.fastpath.graphs``): the fixed-shape row and its loss are TRL's, checked on CPU
(the capture itself needs a GPU: ``benchmarks/`` runs it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ethsft.fastpath import graphs

PRESET = Path(__file__).resolve().parents[2] / "configs" / "training_config.yaml"


def _row():
    # two samples (5 and 3 tokens) in a padding-free row, completion-only labels
    ids = torch.tensor([[11, 12, 13, 14, 15, 21, 22, 23]])
    labels = torch.tensor([[-100, -100, 13, 14, 15, -100, 22, 23]])
    return {"input_ids": ids, "labels": labels, "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]),
            "cu_seq_lens_q": torch.tensor([0, 5, 8], dtype=torch.int32)}


def test_static_inputs_pad_with_one_ignored_sample_and_empty_bounds():
    shape = graphs.RowShape(rows=12, bounds=6, longest=12)
    ids, pos, cu, targets, count = graphs.static_inputs(_row(), shape, pad_id=0)
    assert ids.tolist() == [[11, 12, 13, 14, 15, 21, 22, 23, 0, 0, 0, 0]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]]
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 5, 8, 12, 12, 12]
    assert targets.tolist() == [[-100, 13, 14, 15, -100, 22, 23, -100, -100, -100, -100, -100]]
    assert count.item() == 5.0
    assert graphs.static_inputs(_row(), shape, pad_id=0, num_items=torch.tensor(40))[4].item() == 40.0


def test_static_inputs_cut_the_padding_into_pieces_no_longer_than_the_longest_sample():
    ids, pos, cu, _, _ = graphs.static_inputs(_row(), graphs.RowShape(rows=20, bounds=7, longest=5), pad_id=0)
    assert cu.tolist() == [0, 5, 8, 13, 18, 20, 20]  # padding 8..20 as 5 + 5 + 2
    assert pos.tolist()[0][8:] == list(range(12))  # positions are attention-irrelevant for the ignored padding


def test_static_inputs_refuse_rows_that_do_not_fit():
    assert graphs.static_inputs(_row(), graphs.RowShape(7, 6, 7), pad_id=0) is None  # longer than the graphed row
    assert graphs.static_inputs(_row(), graphs.RowShape(12, 3, 12), pad_id=0) is None  # needs 4 bounds
    assert graphs.static_inputs(_row(), graphs.RowShape(20, 5, 5), pad_id=0) is None  # 3 padding pieces: 6 bounds
    assert graphs.static_inputs(_row(), graphs.RowShape(8, 3, 8), pad_id=0)[2].tolist() == [0, 5, 8]  # exact fit
    no_bounds = {k: v for k, v in _row().items() if k != "cu_seq_lens_q"}
    assert graphs.static_inputs(no_bounds, graphs.RowShape(12, 6, 12), pad_id=0) is None


def test_row_shape_from_the_packed_dataset():
    from datasets import Dataset

    packed = Dataset.from_dict({"seq_lengths": [[700, 900, 300], [1177], [400, 400, 400, 400, 400]]})
    assert graphs.row_shape(2048, packed) == graphs.RowShape(rows=2048, bounds=5 + 2 + 1, longest=1177)
    assert graphs.row_shape(2048) == graphs.RowShape(rows=2048, bounds=64 + 1 + 1, longest=2048)


def test_chunked_nll_equals_full_cross_entropy():
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (37,), generator=g)
    targets[::4] = -100
    full = torch.nn.functional.cross_entropy(head(hidden), targets, ignore_index=-100, reduction="sum")
    (gf,) = torch.autograd.grad(full, hidden)
    chunked = graphs.chunked_nll(head, hidden, targets, chunk=8)
    (gc,) = torch.autograd.grad(chunked, hidden)
    torch.testing.assert_close(chunked, full)
    torch.testing.assert_close(gc, gf)


def test_padded_row_gives_trls_loss_and_lora_grads(tmp_path, ethsft_cache):
    """A real packed batch from the fast path's trainer: TRL's ``compute_loss`` on it, and ``PackedLoss`` on the
    same batch padded by 37 tokens, give the same loss and the same LoRA gradients."""
    from ethsft.experiments import bench

    dataset = bench.prepare_data(tmp_path, 24)
    knobs = dict(bench.MODES["b"], base="b", rows=1024, ckpt="none")
    prepared, _, _ = bench.build_mode("b", knobs, "tiny-mistral", dataset, 1, 12, tmp_path, sets=("lora.dropout=0",))
    trainer = prepared.trainer
    model = trainer.model
    model.train()
    batch = next(b for b in trainer.get_train_dataloader() if b["cu_seq_lens_q"].numel() > 2)  # 2+ samples
    inputs = trainer._prepare_inputs(batch)
    n_items = torch.tensor(1000)  # the whole accumulated batch's count, as the trainer passes it

    def loss_and_grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    ref, ref_grads = loss_and_grads(trainer.compute_loss(model, dict(inputs), num_items_in_batch=n_items))
    shape = graphs.row_shape(inputs["input_ids"].shape[1] + 37, trainer.train_dataset)
    assert shape.longest < shape.rows  # the padding is cut into pieces
    static = graphs.static_inputs(inputs, shape, pad_id=0, num_items=n_items)
    ours, our_grads = loss_and_grads(graphs.PackedLoss(model, shape.longest)(*static))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert ref_grads.keys() == our_grads.keys() and len(ref_grads) > 0
    for name, grad in ref_grads.items():
        # float32 sums in another order: the error scales with the gradient's size, not with each element's
        scale = grad.abs().max().item()
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-5 * scale, msg=name)
    assert any(g.abs().sum() > 0 for g in ref_grads.values())


def test_cuda_graphs_need_the_fast_path_and_packing():
    from ethsft.config.schema import ConfigError, load_settings

    assert load_settings(PRESET).optimization.cuda_graphs  # the 12GB preset graphs its rows
    with pytest.raises(ConfigError) as err:
        load_settings(PRESET, {"data.packing": False})
    assert str(err.value) == ("optimization.cuda_graphs needs optimization.fast_path: true and data.packing: true (the "
                              "graphs replay packed rows of data.max_length tokens); set optimization.cuda_graphs: false")
    assert not load_settings(PRESET, {"data.packing": False, "optimization.cuda_graphs": False}).data.packing


def test_models_whose_loss_packedloss_would_not_compute_are_named(tiny_model_path):
    from transformers import AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM

    tiny = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert graphs.unsupported(tiny) is None
    assert graphs.unsupported(tiny, processes=2) == "several processes or DeepSpeed: one process only"
    assert graphs.unsupported(tiny, deepspeed=True) == "several processes or DeepSpeed: one process only"
    assert graphs.unsupported(torch.nn.Linear(2, 2)) == "Linear has no .model decoder and .lm_head"
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    assert graphs.unsupported(gemma) == "Gemma2ForCausalLM soft-caps its logits"


def test_a_failed_capture_stops_with_the_reason_and_the_way_out():
    trainer = SimpleNamespace(model=torch.nn.Linear(2, 2), processing_class=SimpleNamespace(pad_token_id=0),
                              accelerator=SimpleNamespace(mixed_precision="bf16"))
    runner = graphs.GraphedLoss(trainer, graphs.RowShape(rows=12, bounds=6, longest=12))

    def capture(sample):
        raise ValueError("operation not permitted when stream is capturing")

    runner._capture = capture
    with pytest.raises(RuntimeError) as err:
        runner(_row())
    assert str(err.value) == (
        "CUDA-graph capture of the training step failed (ValueError: operation not permitted when stream is "
        "capturing). Set optimization.cuda_graphs: false to train without graphs, or, where this process already "
        "captured another model's graphs, train in a fresh process.")
    assert runner.replays == 0 and runner.graphed is None
