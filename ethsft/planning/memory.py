"""Will it fit? Peak GPU memory of one training micro-batch, from byte counts (what
``torch.cuda.max_memory_allocated`` reports, then the card's overheads on top):

  base weights    decoder linears in 4 bits (0.5 B/param) + NF4 block constants (double quant: 1 B per 64
                  params + 4 B per 64*256), embeddings / lm_head / norms in the compute dtype (2 B)
  LoRA            r * (in + out) per targeted linear per layer; TRL keeps adapters in bf16 for 4-bit models:
                  weights 2 B + grads 2 B (the grads only with accumulation > 1: see estimate_memory); AdamW
                  states 8 B (32-bit) / 2 B (8-bit) per param; paged optimizers keep them in CUDA unified
                  memory, outside torch's allocator
  activations     per token and layer, the tensors autograd saves (see ``_layer_act_bytes``); with gradient
                  checkpointing only each layer's input stays, plus the layer recomputed during backward
  LM head         TRL 1.x's fused, tiled LM head never builds the full logits: a fixed tile buffer
  transient       the bf16 copy bitsandbytes dequantizes each 4-bit weight into, and its gradient temp

First-principles byte counts; CKPT_LIVE_LAYERS, ALLOCATOR_OVERHEAD and CUDA_CONTEXT_GIB fitted / measured on
H100 (benchmarks/results/calibration_h100_2026-11-25.json, 2026-11-25).
"""

from __future__ import annotations

from dataclasses import dataclass

from ethsft.config.schema import Settings
from ethsft.fastpath.switches import fast_path_on, graphed, packed_rows
from ethsft.planning.shapes import ModelShape, lora_params, targeted
from ethsft.units import GiB

NF4_BYTES_PER_PARAM = 0.5
QUANT_CONST_BYTES_PER_PARAM = {True: 1 / 64 + 4 / (64 * 256), False: 4 / 64}  # double quant on / off
COMPUTE_BYTES = 2  # bf16 / fp16 embeddings, lm_head, norms, activations
# Saved-for-backward bytes per token per decoder layer, as multiples of hidden, kv_dim and intermediate. The
# frozen 4-bit linears save nothing (bitsandbytes' backward needs only the weight), so what a layer keeps is:
# both RMSNorms' fp32 inputs 2x4h, sdpa's q 2h, k/v 2kv each and output 2h, the MLP's gate, up and silu(gate)
# 3x2i; plus, per LoRA-targeted linear, what its adapter saves (see _layer_act_bytes).
ACT_HIDDEN_BYTES = 12
ACT_KV_BYTES = 4
ACT_INTERMEDIATE_BYTES = 6
ACT_LORA_INPUT_BYTES = 2     # lora.dropout == 0: lora_A saves its (bf16) input, shared by linears reading one tensor
ACT_DROPOUT_BYTES = 3        # lora.dropout > 0: each targeted linear's dropout output (2) + mask (1) x in_features
ACT_REPEAT_KV_BYTES = 4      # padded micro-batches (batch > 1) send a mask to sdpa: k/v expanded to all heads
# The fast path (optimization.fast_path with packing) keeps less: both norms' inputs in bf16 with Liger (fp32
# without) 2x2h, attention's q and output 2x2h and k/v 2kv each, the MLP's gate and up 2x2i (silu recomputed),
# each adapter's input once per distinct tensor (dropout folded into lora_A: no dropped copy) and, under CUDA
# graphs, a bool dropout mask per adapter. For Mistral-7B with r 16 on q/v that is 100 KiB per token and layer,
# as measured on the H100: 0.196 GiB per uncheckpointed 2048-token layer (fit_checkpointing's probes), 54.9 GiB
# peak for 16,384-token rows with no layer checkpointed (benchmarks/results/bench_graphs_h100_2026-11-25.json, b80).
FAST_ACT_NORM_BYTES = {True: 4, False: 8}  # x hidden, Liger on / off
FAST_ACT_HIDDEN_BYTES = 4
FAST_ACT_KV_BYTES = 4
FAST_ACT_INTERMEDIATE_BYTES = 4
# Compiled decoder layers (optimization.compile) keep a little more: 0.203 vs 0.196 GiB per uncheckpointed
# 2048-token layer in one H100 run's probes (benchmarks/results/bench_compile_vs_graphs_h100_2026-11-26.json), ~1 byte per
# token and hidden unit.
FAST_ACT_COMPILED_HIDDEN_BYTES = 1
CKPT_INPUT_BYTES = 2         # with checkpointing, each layer keeps only its bf16 input
# One layer recomputed + its gradients in flight during backward, in layers' worth of saved activations.
# Fitted on H100 measurements (benchmarks/results/calibration_h100_2026-11-25.json, 2026-11-25): the four checkpointed
# settings' peaks, least squares.
CKPT_LIVE_LAYERS = 1.07
MODEL_IO_HIDDEN_BYTES = 16   # embedding output, final norm (fp32), grads at the model's ends, per token x hidden
LM_HEAD_TILE_TOKENS = 4096   # TRL's fused LM head: tokens per tile (trl/kernels/chunked_logprob.py)
LM_HEAD_TILE_VOCAB = 4096    # vocab columns per tile
LM_HEAD_BYTES_PER_TOKEN = 24  # per-token log-probs, entropy, top-1, masks (fp32)
EAGER_SCORE_BYTES = 6        # eager attention keeps heads x seq x seq scores (bf16 + fp32 softmax)
# Measured on H100 (benchmarks/results/calibration_h100_2026-11-25.json, 2026-11-25): peak reserved / peak allocated was
# 1.029-1.041 over the five settings; card memory outside torch's allocator (CUDA context, cuBLAS workspaces,
# bitsandbytes) 0.75 GiB with torch 2.11 / CUDA 13 (paged optimizer states come on top, counted separately).
ALLOCATOR_OVERHEAD = 1.04
CUDA_CONTEXT_GIB = 0.75
OPTIMIZER_STATE_BYTES = {"32bit": 8, "8bit": 2, "torch": 4}


@dataclass
class MemoryEstimate:
    tokens: int                      # tokens in the largest micro-batch the estimate assumes
    rows: int
    parts: dict[str, float]          # GiB, what torch's allocator holds at the peak
    outside_allocator: dict[str, float]  # GiB on the card but not in max_memory_allocated
    checkpointed: float | None = None  # fraction of decoder layers checkpointed (None: as configured)

    @property
    def peak_allocated_gib(self) -> float:
        return sum(self.parts.values())

    @property
    def card_gib(self) -> float:
        """What the card must hold: allocator peak with fragmentation, plus context and paged states."""
        return self.peak_allocated_gib * ALLOCATOR_OVERHEAD + sum(self.outside_allocator.values())

    def breakdown(self) -> str:
        parts = " | ".join(f"{k} {v:.2f}" for k, v in self.parts.items())
        outside = " | ".join(f"{k} {v:.2f}" for k, v in self.outside_allocator.items() if v >= 0.005)
        return parts + (f"  (+ outside torch's allocator: {outside})" if outside else "")


def _optim_kind(optim: str) -> tuple[str, bool]:
    paged = optim.startswith("paged_")
    if "8bit" in optim:
        return "8bit", paged
    if "32bit" in optim:
        return "32bit", paged
    return "torch", paged


# LoRA inputs that are one tensor: q/k/v read the first norm's output, gate/up the second's.
_LORA_INPUT_GROUP = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "o", "gate_proj": "mlp",
                     "up_proj": "mlp", "down_proj": "down"}


def _layer_act_bytes(s: Settings, shape: ModelShape, row_len: int, padded_batch: bool) -> float:
    """Bytes autograd saves per token in one decoder layer (no checkpointing)."""
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    dims = shape.linear_dims()
    mods = targeted(s, shape)
    if packed_rows(s):
        liger = s.optimization.use_liger_kernel not in (False, "false")
        b = (FAST_ACT_NORM_BYTES[liger] + FAST_ACT_HIDDEN_BYTES) * h + FAST_ACT_KV_BYTES * kv \
            + FAST_ACT_INTERMEDIATE_BYTES * i
        if s.optimization.compile:
            b += FAST_ACT_COMPILED_HIDDEN_BYTES * h
        groups = {_LORA_INPUT_GROUP[m]: dims[m][0] for m in mods}
        b += sum(ACT_LORA_INPUT_BYTES * d for d in groups.values())
        if s.lora.dropout > 0 and (graphed(s) or s.optimization.compile):
            # one bool mask per adapter (graphs), or what the compiled layers keep of peft's own dropout (measured
            # alike: the 80GB preset compiled, 63.3 GiB peak at 16k-token rows on the H200 vs 54.9 not compiled)
            b += sum(dims[m][0] for m in mods)
        return b + sum(2 * s.lora.r for _ in mods)
    b = ACT_HIDDEN_BYTES * h + ACT_KV_BYTES * kv + ACT_INTERMEDIATE_BYTES * i
    if padded_batch:
        b += ACT_REPEAT_KV_BYTES * (h - kv)
    if s.lora.dropout > 0:  # each adapter drops out its own copy of the input
        b += sum(ACT_DROPOUT_BYTES * dims[m][0] for m in mods)
    else:  # the adapters keep the input itself: once per distinct tensor
        groups = {_LORA_INPUT_GROUP[m]: dims[m][0] for m in mods}
        b += sum(ACT_LORA_INPUT_BYTES * d for d in groups.values())
    b += sum(2 * s.lora.r for _ in mods)  # lora_A outputs
    if s.model.attn_implementation == "eager":
        b += EAGER_SCORE_BYTES * shape.heads * row_len
    return b


def estimate_memory(s: Settings, shape: ModelShape, row_len: int | None = None, rows: int | None = None,
                    completion_frac: float = 1.0) -> MemoryEstimate:
    """Peak GPU memory of one training micro-batch of ``rows`` x ``row_len`` tokens (defaults: batch x max_length).

    With packing, ``rows`` rows of ``max_length`` are flattened into one padding-free row.
    """
    rows = rows or s.training.per_device_train_batch_size
    row_len = min(row_len or s.data.max_length, s.data.max_length)
    tokens = rows * row_len
    padded_batch = rows > 1 and not s.data.packing
    attn_len = row_len
    q = s.quantization
    parts: dict[str, float] = {}
    if q.load_in_4bit:
        base = shape.linear_params * (NF4_BYTES_PER_PARAM + QUANT_CONST_BYTES_PER_PARAM[q.bnb_4bit_use_double_quant])
    else:
        base = shape.linear_params * COMPUTE_BYTES
    base += (shape.embed_params + shape.norm_params) * COMPUTE_BYTES
    parts["base weights"] = base / GiB
    n_lora = lora_params(s, shape)
    kind, paged = _optim_kind(s.optimization.optim)
    # bf16 adapter weights; their grads are on the card at the peak (the start of backward) only when they carry
    # over from earlier micro-batches of an accumulated step: with accumulation 1, zero_grad(set_to_none) drops
    # them and they build up as backward frees the activations (measured: r 64 on all linears, 0.31 GiB of
    # grads, added nothing to the peak at accumulation 1)
    grads = n_lora * COMPUTE_BYTES if s.training.gradient_accumulation_steps > 1 else 0
    parts["LoRA + grads"] = (n_lora * COMPUTE_BYTES + grads) / GiB
    states = n_lora * OPTIMIZER_STATE_BYTES[kind] / GiB
    if not paged:
        parts["optimizer"] = states
    layer = _layer_act_bytes(s, shape, attn_len, padded_batch)
    if s.optimization.gradient_checkpointing:
        act = tokens * (shape.layers * CKPT_INPUT_BYTES * shape.hidden + CKPT_LIVE_LAYERS * layer)
    else:
        act = tokens * shape.layers * layer
    act += tokens * MODEL_IO_HIDDEN_BYTES * shape.hidden
    parts["activations"] = act / GiB
    completion_tokens = tokens * completion_frac
    lm = (min(completion_tokens, LM_HEAD_TILE_TOKENS) * min(shape.vocab, LM_HEAD_TILE_VOCAB) * 4
          + completion_tokens * LM_HEAD_BYTES_PER_TOKEN)
    parts["LM head"] = lm / GiB
    dims = shape.linear_dims()
    biggest = max(a * b for a, b in dims.values())
    parts["dequant buffers"] = (2 * biggest * COMPUTE_BYTES) / GiB if q.load_in_4bit else 0.0
    o = s.optimization
    if fast_path_on(s) and o.vram_budget_gib and o.gradient_checkpointing:
        # the fast path leaves layers uncheckpointed while the measured peak stays under budget - margin
        from ethsft.fastpath.checkpointing import FIT_MARGIN_GIB

        every_layer = (tokens * shape.layers * layer + tokens * MODEL_IO_HIDDEN_BYTES * shape.hidden) / GiB
        room = o.vram_budget_gib - FIT_MARGIN_GIB - (sum(parts.values()) - parts["activations"])
        all_checkpointed = parts["activations"]
        parts["activations"] = max(all_checkpointed, min(every_layer, room))
        kept = (parts["activations"] - all_checkpointed) / max(every_layer - all_checkpointed, 1e-9)
        checkpointed = 1.0 - min(1.0, kept)
    else:
        checkpointed = None
    outside = {"CUDA context": CUDA_CONTEXT_GIB, "paged optimizer": states if paged else 0.0}
    return MemoryEstimate(tokens, rows, parts, outside, checkpointed)
