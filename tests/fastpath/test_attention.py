"""Packing correctness on CPU: a packed, padding-free row (position_ids restarting per sample, TRL's collator)
gives every sample the same loss as training on it unpacked, so the fast path does not change what is learned."""

from __future__ import annotations

import pytest
import torch

from ethsft.fastpath import attention, checkpointing, lean

LENGTHS = [37, 5, 64, 18, 29]


def _load(path, attn):
    from transformers import AutoModelForCausalLM

    if attn == attention.VARLEN:
        attention.register_attention()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    model.config.use_cache = False
    return model.eval()


def _samples(vocab: int):
    g = torch.Generator().manual_seed(0)
    out = []
    for n in LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=g)
        mask = torch.zeros(n, dtype=torch.long)
        mask[n // 2:] = 1  # completion-only loss: the second half
        out.append((ids, mask))
    return out


def _labels(ids, mask):
    lab = ids.clone()
    lab[mask == 0] = -100
    return lab


def _per_sample_loss(logits, labels):
    """Mean next-token loss of one sample (logits/labels of that sample only)."""
    return torch.nn.functional.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100)


def _unpacked(model, samples):
    """Padded batch (right padding, attention mask): the usual unpacked path."""
    width = max(len(i) for i, _ in samples)
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    att = torch.zeros_like(ids)
    for r, (i, _) in enumerate(samples):
        ids[r, :len(i)] = i
        att[r, :len(i)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=att).logits
    return [_per_sample_loss(logits[r, :len(i)], _labels(i, m)) for r, (i, m) in enumerate(samples)]


def _packed(model, samples):
    """One padding-free row as TRL's collator builds it for packing=True (bfd)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    row = {"input_ids": torch.cat([i for i, _ in samples]).tolist(),
           "labels": torch.cat([_labels(i, m) for i, m in samples]).tolist(),
           "seq_lengths": [len(i) for i, _ in samples]}
    batch = collator([row])
    assert batch["position_ids"][0].tolist() == sum((list(range(n)) for n in LENGTHS), [])
    assert "attention_mask" not in batch
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
    losses, start = [], 0
    for n in LENGTHS:
        losses.append(_per_sample_loss(logits[start:start + n], batch["labels"][0, start:start + n]))
        start += n
    return losses


@pytest.mark.parametrize("attn", ["sdpa", "eager", attention.VARLEN, "flex_attention"])
def test_packed_loss_equals_unpacked(tiny_model_path, attn):
    reference = _unpacked(_load(tiny_model_path, "eager"), _samples(_vocab(tiny_model_path)))
    model = _load(tiny_model_path, attn)
    try:
        packed = _packed(model, _samples(model.config.vocab_size))
    except Exception as e:  # flex_attention needs torch.compile's CPU backend; skip where it is missing
        if attn == "flex_attention":
            pytest.skip(f"flex_attention unavailable on this CPU build: {type(e).__name__}: {e}"[:200])
        raise
    for i, (p, r) in enumerate(zip(packed, reference)):
        assert torch.isfinite(p)
        assert abs(p.item() - r.item()) < 1e-4, f"sample {i} ({LENGTHS[i]} tokens): packed {p} vs unpacked {r}"


def test_packing_without_boundaries_would_differ(tiny_model_path):
    """The check has teeth: a packed row whose samples attend across boundaries gives different losses."""
    model = _load(tiny_model_path, "eager")
    samples = _samples(model.config.vocab_size)
    reference = _unpacked(model, samples)
    ids = torch.cat([i for i, _ in samples])[None]
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None]).logits[0]
    start, diffs = LENGTHS[0], []
    for k, (i, m) in enumerate(samples[1:], start=1):
        n = len(i)
        diffs.append(abs(_per_sample_loss(logits[start:start + n], _labels(i, m)).item() - reference[k].item()))
        start += n
    assert max(diffs) > 1e-3


def _vocab(path):
    import json
    from pathlib import Path

    return json.loads((Path(path) / "config.json").read_text())["vocab_size"]


def test_lean_mlp_same_loss_and_grads(tiny_model_path):
    """The fast path's SwiGLU keeps fewer activations; loss and gradients are unchanged."""
    samples = _samples(_vocab(tiny_model_path))
    ids = samples[2][0][None]

    def run(patch):
        model = _load(tiny_model_path, "sdpa").train()
        if patch:
            assert lean.lean_mlp(model) == model.config.num_hidden_layers
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if "mlp" in n}
        return out.loss.detach(), grads

    loss_a, grads_a = run(False)
    loss_b, grads_b = run(True)
    assert abs(loss_a.item() - loss_b.item()) < 1e-6
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


def test_selective_checkpointing_same_grads(tiny_model_path):
    """Checkpointing a subset of layers changes memory, not gradients."""
    samples = _samples(_vocab(tiny_model_path))
    ids = samples[0][0][None]

    def run(n_ckpt):
        model = _load(tiny_model_path, "sdpa").train()
        chosen = checkpointing.set_checkpointed_layers(model, n_ckpt)
        assert len(chosen) == n_ckpt
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full, some = run(0), run(1)
    for name in full:
        torch.testing.assert_close(full[name], some[name], rtol=1e-5, atol=1e-7)


def test_spread():
    assert checkpointing.spread(32, 0) == []
    assert checkpointing.spread(32, 32) == list(range(32))
    picked = checkpointing.spread(32, 8)
    assert len(picked) == 8 and picked[0] < 4 and picked[-1] >= 28


@pytest.mark.parametrize("device_masks", [False, True])
def test_dropout_linear_matches_dropout_then_linear(device_masks):
    """The fused LoRA dropout draws its mask again in backward from the seed (or, for CUDA graphs, keeps the mask
    it drew from the device generator): same output and gradients as dropping x with that mask and multiplying."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    if device_masks:
        state = torch.get_rng_state()
        y = lean._DropoutLinear.apply(x, w, 0.3, None)
        torch.set_rng_state(state)
        keep = torch.native_dropout(x.detach(), 0.3, True)[1]
    else:
        y = lean._DropoutLinear.apply(x, w, 0.3, 1234)
        keep = lean._dropout_mask(x.shape, 0.3, 1234, x.device)
    assert 0.5 < keep.float().mean().item() < 0.85
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y2 = (x2 * keep / 0.7) @ w2.t()
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)


def _lora_model(path, dropout):
    from peft import LoraConfig, get_peft_model

    model = _load(path, "sdpa")
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False)
    return get_peft_model(model, cfg).eval()


@pytest.mark.parametrize("device_masks", [False, True])
def test_lean_lora_dropout_eval_identical_and_checkpoint_consistent(tiny_model_path, device_masks):
    ids = _samples(_vocab(tiny_model_path))[2][0][None]
    model = _lora_model(tiny_model_path, 0.2)
    with torch.no_grad():
        before = model(input_ids=ids).logits
    layers = model.config.num_hidden_layers
    assert lean.lean_lora_dropout(model, device_masks) == 2 * layers
    assert lean.lean_lora_dropout(model, device_masks) == 0  # already folded
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, before)  # eval: no dropout, same numbers

    def grads(n_ckpt, seed=5):
        model.train()
        checkpointing.set_checkpointed_layers(model, n_ckpt)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, ckpt = grads(0), grads(layers)  # recompute must draw the same masks
    assert plain and set(plain) == set(ckpt)
    for name in plain:
        torch.testing.assert_close(plain[name], ckpt[name], rtol=1e-5, atol=1e-7)
    other = grads(0, seed=6)  # another seed: other masks, other gradients (dropout is live)
    assert any(not torch.allclose(plain[n], other[n]) for n in plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlashAttention needs a CUDA GPU")
@pytest.mark.parametrize("pad", [0, 11])
def test_flash_varlen_gqa_matches_per_sample_sdpa(pad):
    """The direct FlashAttention call (grouped k/v heads not repeated) equals causal SDPA run sample by sample."""
    torch.manual_seed(0)
    lens = [37, 5, 300, 18, 129]
    total = sum(lens)
    cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device="cuda")
    L, H, Hkv, D = total + pad, 8, 2, 64
    q = torch.randn(1, H, L, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, Hkv, L, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, Hkv, L, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    out = attention._varlen(q, k, v, cu, max(lens), None, None)  # (1, L, H, D)
    ref = attention.packed_sdpa_loop(q, k, v, cu)
    torch.testing.assert_close(out[:, :total], ref[:, :total], atol=2e-2, rtol=2e-2)
    assert torch.count_nonzero(out[:, total:]) == 0
    g = torch.randn_like(out)
    g[:, total:] = 0
    grads = torch.autograd.grad(out, (q, k, v), g)
    grads_ref = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)


def test_lean_lora_add_same_output_and_grads_as_peft(tiny_model_path):
    """One addmm per LoRA linear (base + scaling * A x B^T) gives peft's outputs and gradients; merged or disabled
    adapters still go through peft."""
    ids = _samples(_vocab(tiny_model_path))[2][0][None]
    model = _lora_model(tiny_model_path, 0.0)
    model.train()

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    logits, grads = run()
    assert lean.lean_lora_add(model) == 2 * model.config.num_hidden_layers
    assert lean.lean_lora_add(model) == 0  # already patched
    logits2, grads2 = run()
    torch.testing.assert_close(logits2, logits, rtol=1e-5, atol=1e-5)
    assert grads.keys() == grads2.keys() and any(g.abs().sum() > 0 for g in grads.values())
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
    with model.disable_adapter(), torch.no_grad():  # peft's own path: the base model alone
        base = model(input_ids=ids).logits
    assert not torch.allclose(base, logits, atol=1e-4)
