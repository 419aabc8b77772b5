"""Before a run: will it fit, and how long will it take? A model of a QLoRA SFT run, from the config alone.

``ethsft estimate`` and ``ethsft doctor --config`` use it. Nothing here loads weights: the model's shape
comes from its ``config.json`` (local folder, embedded shape, the hub through ``AutoConfig``, or a built-in
table of common shapes when offline), the dataset's token counts from the model's own tokenizer and chat
template, exactly as ``ethsft train`` tokenizes.

Memory model (bytes; what ``torch.cuda.max_memory_allocated`` reports, then card overheads on top):

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

Time model: a micro-batch takes the longer of the host's time (Python and kernel launches per decoder layer
and LoRA adapter, per pass: 3 passes with checkpointing, 2 without, 2 + the checkpointed fraction where the fast
path fits checkpointing to a budget; two graph launches under CUDA graphs) and the GPU's (dequantizing every
4-bit linear each pass, memory-bound, + FLOPs / (dense bf16 peak x MFU, the fast path's measured rate where it
is on)); each optimizer step adds a fixed cost and one per LoRA tensor. See the time-model section below.

Fitted constants come from H100 measurements of the 7B shape (benchmarks/results/h100_calibration.json,
2026-11-25); ``benchmarks/estimate_vs_measured.py`` compares the model with them and prints the
least-squares values (--fit); ``benchmarks/calibrate_estimate.py`` measures a GPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ethsft.config.schema import ConfigError, Settings

GiB = 2**30

# --------------------------------------------------------------------------------------------------------
# Named GPUs: VRAM as CUDA reports it (GiB), dense bf16 tensor TFLOPs with fp32 accumulation (what torch's
# bf16 matmuls use; GeForce cards run that at half their fp16-accumulate rate), memory bandwidth (GB/s).
# Figures from NVIDIA's datasheets / architecture whitepapers (no sparsity).
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    vram_gib: float
    bf16_tflops: float
    bandwidth_gbs: float
    bf16: bool = True
    match: tuple[str, ...] = ()  # lower-case substrings of torch.cuda.get_device_name()


GPUS: dict[str, GPU] = {g.key: g for g in [
    GPU("rtx3060", "NVIDIA GeForce RTX 3060 12GB", 11.76, 25.6, 360, match=("rtx 3060",)),
    GPU("rtx3090", "NVIDIA GeForce RTX 3090", 23.69, 71.0, 936, match=("rtx 3090",)),
    GPU("rtx4090", "NVIDIA GeForce RTX 4090", 23.99, 165.2, 1008, match=("rtx 4090",)),
    GPU("t4", "NVIDIA T4", 14.58, 65.0, 320, bf16=False, match=("tesla t4", " t4")),
    GPU("l4", "NVIDIA L4", 22.03, 121.0, 300, match=(" l4",)),
    GPU("a10g", "NVIDIA A10G", 22.07, 70.0, 600, match=("a10g",)),
    GPU("a100-40gb", "NVIDIA A100 40GB", 39.39, 312.0, 1555, match=("a100-sxm4-40gb", "a100-pcie-40gb", "a100 40")),
    GPU("a100", "NVIDIA A100 80GB", 79.15, 312.0, 2039, match=("a100",)),
    GPU("h100-pcie", "NVIDIA H100 PCIe 80GB", 79.19, 756.0, 2000, match=("h100 pcie",)),
    GPU("h100", "NVIDIA H100 80GB (SXM)", 79.19, 989.0, 3350, match=("h100",)),
    GPU("h200", "NVIDIA H200 141GB", 139.8, 989.0, 4800, match=("h200",)),
]}


def named_gpu(key: str) -> GPU:
    k = key.lower().replace(" ", "").replace("_", "-")
    if k in GPUS:
        return GPUS[k]
    raise ConfigError(f"unknown GPU {key!r}; choose one of: {', '.join(GPUS)} (or 'auto' for the detected one)")


def detect_gpu() -> GPU | None:
    """The visible CUDA GPU as a table entry (known name) or an ad-hoc one (unknown name: VRAM only)."""
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory / GiB
    low = " " + name.lower()
    for gpu in GPUS.values():
        if any(m in low for m in gpu.match):
            return GPU(gpu.key, name, total, gpu.bf16_tflops, gpu.bandwidth_gbs, gpu.bf16, gpu.match)
    # Unknown card: guess throughput from an H100-relative scale on SM count (marked as a guess by the caller).
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return GPU("unknown", name, total, 989.0 * sms / 132 * 0.3, 1000.0, torch.cuda.is_bf16_supported())


# --------------------------------------------------------------------------------------------------------
# Model shapes
# --------------------------------------------------------------------------------------------------------

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    source: str = ""
    tokenizer: str = "own"  # "mistral-v1": the embedded Mistral tokenizer is exact for this model when offline

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each decoder linear."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_dims().values())

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embed_params + self.norm_params


def _shape(name, h, i, layers, heads, kv, vocab, tokenizer="own"):
    return ModelShape(name, h, i, layers, heads, kv, vocab, source="built-in table", tokenizer=tokenizer)


_MISTRAL_7B = dict(h=4096, i=14336, layers=32, heads=32, kv=8)
# Shapes of common base models, for offline use (their config.json values).
BUILTIN_SHAPES: dict[str, ModelShape] = {
    "mistralai/mistral-7b-instruct-v0.1": _shape("Mistral-7B-Instruct-v0.1", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-instruct-v0.2": _shape("Mistral-7B-Instruct-v0.2", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-v0.1": _shape("Mistral-7B-v0.1", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-instruct-v0.3": _shape("Mistral-7B-Instruct-v0.3", **_MISTRAL_7B, vocab=32768),
    "mistralai/mistral-7b-v0.3": _shape("Mistral-7B-v0.3", **_MISTRAL_7B, vocab=32768),
    "meta-llama/llama-2-7b-hf": _shape("Llama-2-7B", 4096, 11008, 32, 32, 32, 32000),
    "meta-llama/llama-2-7b-chat-hf": _shape("Llama-2-7B-chat", 4096, 11008, 32, 32, 32, 32000),
    "meta-llama/llama-2-13b-hf": _shape("Llama-2-13B", 5120, 13824, 40, 40, 40, 32000),
    "meta-llama/llama-2-13b-chat-hf": _shape("Llama-2-13B-chat", 5120, 13824, 40, 40, 40, 32000),
}


def shape_from_config(config: dict, name: str, source: str) -> ModelShape:
    try:
        h = config["hidden_size"]
        heads = config["num_attention_heads"]
        return ModelShape(name, h, config["intermediate_size"], config["num_hidden_layers"], heads,
                          config.get("num_key_value_heads") or heads, config["vocab_size"],
                          bool(config.get("tie_word_embeddings", False)), source)
    except KeyError as e:
        raise ConfigError(f"{source}: config.json lacks {e.args[0]} (expected a Llama/Mistral-style decoder)") from None


def model_shape(s: Settings) -> ModelShape:
    """The base model's shape, without loading weights: embedded shape, local config.json, built-in table, hub."""
    from ethsft.model import embedded

    name = s.model.base_model
    if embedded.is_embedded(name):
        key = name[len(embedded.EMBEDDED_PREFIX):]
        if key not in embedded.SHAPES:
            raise ConfigError(f"model.base_model: unknown embedded model {name!r}; choose one of: "
                              + ", ".join(embedded.EMBEDDED_PREFIX + k for k in embedded.SHAPES))
        cfg = dict(embedded.SHAPES[key], vocab_size=32000, tie_word_embeddings=False)
        return shape_from_config(cfg, name, "embedded shape (Mistral tokenizer, 32000 tokens)")
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return shape_from_config(json.loads((path / "config.json").read_text(encoding="utf-8")), name,
                                 str(path / "config.json"))
    if name.lower() in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[name.lower()]
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(name, cache_dir=s.model.cache_dir, revision=s.model.revision,
                                         trust_remote_code=s.model.trust_remote_code)
    except Exception as e:  # offline, gated, typo: all end here
        raise ConfigError(f"model.base_model: cannot read the config of {name!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); offline, ethsft knows these shapes: "
                          f"{', '.join(v.name for v in BUILTIN_SHAPES.values())}") from None
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return shape_from_config(cfg.to_dict(), name, "hub config.json")


def targeted(s: Settings, shape: ModelShape) -> list[str]:
    """The decoder linears LoRA adapts (``all-linear`` = all seven)."""
    tm = s.lora.target_modules
    if isinstance(tm, str):
        return list(LINEARS) if tm == "all-linear" else [tm]
    unknown = [m for m in tm if m not in LINEARS]
    if unknown:
        raise ConfigError(f"lora.target_modules: {', '.join(unknown)} is not a decoder linear of this model "
                          f"({', '.join(LINEARS)})")
    return list(tm)


# --------------------------------------------------------------------------------------------------------
# Memory model. First-principles byte counts; CKPT_LIVE_LAYERS, ALLOCATOR_OVERHEAD and CUDA_CONTEXT_GIB
# fitted / measured on H100 (benchmarks/results/h100_calibration.json, 2026-11-25).
# --------------------------------------------------------------------------------------------------------

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
# peak for 16,384-token rows with no layer checkpointed (benchmarks/results/h100_bench_graphs.json, b80).
FAST_ACT_NORM_BYTES = {True: 4, False: 8}  # x hidden, Liger on / off
FAST_ACT_HIDDEN_BYTES = 4
FAST_ACT_KV_BYTES = 4
FAST_ACT_INTERMEDIATE_BYTES = 4
# Compiled decoder layers (optimization.compile) keep a little more: 0.203 vs 0.196 GiB per uncheckpointed
# 2048-token layer in one H100 run's probes (benchmarks/results/h100_bench_compile_vs_graphs.json), ~1 byte per
# token and hidden unit.
FAST_ACT_COMPILED_HIDDEN_BYTES = 1
CKPT_INPUT_BYTES = 2         # with checkpointing, each layer keeps only its bf16 input
# One layer recomputed + its gradients in flight during backward, in layers' worth of saved activations.
# Fitted on H100 measurements (benchmarks/results/h100_calibration.json, 2026-11-25): the four checkpointed
# settings' peaks, least squares.
CKPT_LIVE_LAYERS = 1.07
MODEL_IO_HIDDEN_BYTES = 16   # embedding output, final norm (fp32), grads at the model's ends, per token x hidden
LM_HEAD_TILE_TOKENS = 4096   # TRL's fused LM head: tokens per tile (trl/kernels/chunked_logprob.py)
LM_HEAD_TILE_VOCAB = 4096    # vocab columns per tile
LM_HEAD_BYTES_PER_TOKEN = 24  # per-token log-probs, entropy, top-1, masks (fp32)
EAGER_SCORE_BYTES = 6        # eager attention keeps heads x seq x seq scores (bf16 + fp32 softmax)
# Measured on H100 (benchmarks/results/h100_calibration.json, 2026-11-25): peak reserved / peak allocated was
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


def lora_params(s: Settings, shape: ModelShape) -> int:
    dims = shape.linear_dims()
    return shape.layers * sum(s.lora.r * (dims[m][0] + dims[m][1]) for m in targeted(s, shape))


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
    if fast_path(s):
        liger = s.optimization.use_liger_kernel not in (False, "false")
        b = (FAST_ACT_NORM_BYTES[liger] + FAST_ACT_HIDDEN_BYTES) * h + FAST_ACT_KV_BYTES * kv \
            + FAST_ACT_INTERMEDIATE_BYTES * i
        if s.optimization.compile:
            b += FAST_ACT_COMPILED_HIDDEN_BYTES * h
        groups = {_LORA_INPUT_GROUP[m]: dims[m][0] for m in mods}
        b += sum(ACT_LORA_INPUT_BYTES * d for d in groups.values())
        if s.lora.dropout > 0 and graphed(s):
            b += sum(dims[m][0] for m in mods)  # one bool mask per adapter
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
    if o.fast_path and o.vram_budget_gib and o.gradient_checkpointing:
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


# --------------------------------------------------------------------------------------------------------
# Time model. A micro-batch runs on two streams at once, since CUDA kernel launches are asynchronous; the
# slower one sets the pace:
#   host    Python and kernel launches: per pass and decoder layer, the layer's modules (HF, bitsandbytes'
#           4-bit matmul, gradient checkpointing) plus each LoRA adapter (dropout, A, B, scale, add, and their
#           backward); 3 passes with checkpointing (forward, recompute, backward), 2 without; plus a fixed cost
#           per micro-step (TRL's loss and token metrics, collation). CPU-bound: the same on any GPU.
#   device  each pass dequantizes every 4-bit linear to bf16 (read 0.5 B, write 2 B per param: memory-bound,
#           scales with the card's bandwidth) + the FLOPs at the card's dense bf16 peak x MFU (scales with TFLOPs).
# Fitted on H100 measurements (benchmarks/results/h100_calibration.json, 2026-11-25; 7B shape, NF4, bf16): a
# checkpointed micro-batch took ~0.57 s whether it held 267 or 2,048 tokens (and 48 micro-batches of 2,048
# tokens in h100_12gb_seq2048.json averaged ~0.5 s), ~0.37 s without checkpointing, ~0.79 s with LoRA on all
# seven linears: on an H100 the 7B run is host-bound, so the host constants are fitted (least squares over the
# steady micro-steps) and the device constants are first-principles values that measurement only bounds (the
# 2,048-token micro-batches imply MFU >= ~0.19). Slower cards (RTX 3060: 25.6 TFLOPs, 360 GB/s) are
# device-bound: there the estimate scales by their TFLOPs and bandwidth.
# --------------------------------------------------------------------------------------------------------

MFU = 0.20                     # achieved / peak dense bf16 FLOPs of the 4-bit QLoRA matmuls (first-principles)
DEQUANT_BANDWIDTH_EFF = 0.5    # fraction of memory bandwidth bitsandbytes' 4-bit -> bf16 dequant reaches
HOST_LAYER_PASS_S = 0.0050     # fitted: host seconds per decoder layer per pass (without LoRA)
HOST_LORA_PASS_S = 0.00047     # fitted: host seconds per LoRA adapter per layer per pass
LAUNCH_OVERHEAD_S = 0.0        # fitted: fixed host seconds per micro-step (the free fit gave -0.023 s: none)
OPTIMIZER_STEP_S = 0.018       # fitted: per optimizer step, fixed (scheduler, zero_grad, callbacks)
OPTIMIZER_TENSOR_S = 0.000115  # fitted: per LoRA tensor per optimizer step (grad-norm clipping, paged AdamW)


# The fast path's kernels run the GPU at a measured rate: fitted on its two H100 runs in
# benchmarks/results/h100_bench_graphs.json (b, 2048-token rows, CUDA graphs: 0.48; b80, 16,384-token rows: 0.51),
# where MFU above is only a lower bound from host-bound runs. CUDA-graphed steps (optimization.cuda_graphs): a
# micro-batch is two graph launches, so the host's share is a constant, and the GPU runs the compiled
# dequantisation.
FAST_PATH_MFU = 0.50
GRAPH_HOST_S = 0.005               # measured: two graph launches (~2.3 ms each) and the step's input copies
FUSED_DEQUANT_BANDWIDTH_EFF = 0.77  # measured: ethsft.nf4.fused_dequantize, 57 us per 4096 x 14336 weight


def fast_path(s: Settings) -> bool:
    """The fast path's packed rows: its activation model and GPU rate apply."""
    return bool(s.optimization.fast_path and s.data.packing)


def graphed(s: Settings) -> bool:
    return fast_path(s) and bool(s.optimization.cuda_graphs)


def passes(s: Settings, checkpointed: float | None = None) -> float:
    """Passes over the decoder per micro-batch: forward, (recompute with checkpointing), backward;
    ``checkpointed``: the fraction of layers the fast path's fit checkpoints, where it fits one."""
    if checkpointed is not None:
        return 2 + checkpointed
    return 3 if s.optimization.gradient_checkpointing else 2


def flops_per_token(s: Settings, shape: ModelShape, row_len: float, completion_frac: float = 1.0,
                    checkpointed: float | None = None) -> float:
    """Training FLOPs for one token in a row of ``row_len`` (causal attention over half of it on average)."""
    n = shape.linear_params
    p = passes(s, checkpointed)
    dense = 2 * n * p
    n_lora = lora_params(s, shape)
    lora = 2 * n_lora * (p + 1)  # LoRA also computes its weight grads
    attn_fwd = 4 * (row_len / 2) * shape.hidden * shape.layers  # QK^T and AV, causal
    attn = attn_fwd * (p + 1)  # backward of attention is about 2x forward
    lm_head = 2 * shape.vocab * shape.hidden * 2 * completion_frac  # forward + input-grad, completion tokens only
    return dense + lora + attn + lm_head


def host_pass_s(s: Settings, shape: ModelShape) -> float:
    """Host (Python + launch) seconds for one pass over the decoder."""
    return shape.layers * (HOST_LAYER_PASS_S + HOST_LORA_PASS_S * len(targeted(s, shape)))


def dequant_pass_s(s: Settings, shape: ModelShape, gpu: GPU) -> float:
    """Device seconds to dequantize every 4-bit linear once (0 without 4-bit)."""
    if not s.quantization.load_in_4bit:
        return 0.0
    eff = FUSED_DEQUANT_BANDWIDTH_EFF if graphed(s) else DEQUANT_BANDWIDTH_EFF
    return shape.linear_params * 2.5 / (gpu.bandwidth_gbs * 1e9 * eff)


def optimizer_step_s(s: Settings, shape: ModelShape) -> float:
    return OPTIMIZER_STEP_S + OPTIMIZER_TENSOR_S * 2 * shape.layers * len(targeted(s, shape))


@dataclass
class TimeEstimate:
    step_s: float
    micro_step_s: float
    tokens_per_step: float
    tokens_per_s: float
    flops_per_token: float
    host_s: float = 0.0          # per micro-batch: the host's share
    device_s: float = 0.0        # per micro-batch: the GPU's share (dequant + FLOPs)

    @property
    def bound(self) -> str:
        return "host-bound" if self.host_s >= self.device_s else "GPU-bound"


def estimate_step_time(s: Settings, shape: ModelShape, gpu: GPU, tokens_per_micro: float, row_len: float,
                       completion_frac: float = 1.0, checkpointed: float | None = None) -> TimeEstimate:
    fpt = flops_per_token(s, shape, row_len, completion_frac, checkpointed)
    p = passes(s, checkpointed)
    mfu = FAST_PATH_MFU if fast_path(s) else MFU
    device = p * dequant_pass_s(s, shape, gpu) + tokens_per_micro * fpt / (gpu.bf16_tflops * 1e12 * mfu)
    host = GRAPH_HOST_S if graphed(s) else LAUNCH_OVERHEAD_S + p * host_pass_s(s, shape)
    micro = max(host, device)
    accum = s.training.gradient_accumulation_steps
    step = micro * accum + optimizer_step_s(s, shape)
    tokens_per_step = tokens_per_micro * accum
    return TimeEstimate(step, micro, tokens_per_step, tokens_per_step / step, fpt, host, device)


def estimate_eval_batch_s(s: Settings, shape: ModelShape, gpu: GPU, tokens: float, completion_frac: float) -> float:
    """One evaluation forward pass over ``tokens``: the slower of host and device, as in training."""
    fwd = 2 * shape.linear_params + 2 * shape.vocab * shape.hidden * completion_frac
    device = dequant_pass_s(s, shape, gpu) + tokens * fwd / (gpu.bf16_tflops * 1e12 * MFU)
    return max(LAUNCH_OVERHEAD_S + host_pass_s(s, shape), device)


# --------------------------------------------------------------------------------------------------------
# Dataset statistics with the model's tokenizer
# --------------------------------------------------------------------------------------------------------


@dataclass
class SplitStats:
    name: str
    lengths: list[int]             # tokens per sample, as rendered, before truncation
    completion: list[int]          # tokens the loss falls on
    max_length: int
    policy: str

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def overlong(self) -> int:
        return sum(1 for n in self.lengths if n > self.max_length)

    def trained_lengths(self) -> list[int]:
        """Lengths of the samples training sees: truncated or dropped as data.overlong says."""
        if self.policy == "drop":
            return [n for n in self.lengths if n <= self.max_length]
        return [min(n, self.max_length) for n in self.lengths]

    @property
    def total(self) -> int:
        return sum(self.lengths)

    def percentile(self, p: float) -> int:
        xs = sorted(self.lengths)
        return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


@dataclass
class DatasetStats:
    splits: dict[str, SplitStats]
    tokenizer: str
    exact: bool = True
    notes: list[str] = field(default_factory=list)


def load_counting_tokenizer(s: Settings, shape: ModelShape):
    """The model's tokenizer with the chat template training uses; offline, the embedded Mistral tokenizer."""
    from ethsft.model.loading import load_tokenizer

    try:
        return load_tokenizer(s), s.model.base_model, True, None
    except Exception as e:
        from ethsft.model.embedded import build_tokenizer
        from ethsft.data.formatting import load_template

        tok = build_tokenizer()
        if s.model.chat_template not in ("auto", "mistral") and Path(s.model.chat_template).is_file():
            tok.chat_template = Path(s.model.chat_template).read_text(encoding="utf-8")
        else:
            tok.chat_template = load_template("mistral_instruct")
        exact = shape.tokenizer == "mistral-v1"
        why = f"{s.model.base_model}'s tokenizer is not available here ({type(e).__name__})"
        note = (f"{why}: counted with the identical Mistral v1 tokenizer" if exact
                else f"{why}: counted with the Mistral v1 tokenizer, so counts are approximate")
        return tok, "Mistral v1 (embedded)", exact, note


def dataset_stats(s: Settings, dataset_dir: str | Path | None = None, tokenizer=None) -> DatasetStats:
    """Token counts of every split under ``dataset_dir`` (default data.dataset_dir), as training renders them."""
    from ethsft.data.records import read_records, split_paths
    from ethsft.data.formatting import render

    notes: list[str] = []
    exact, tok_name = True, s.model.base_model
    if tokenizer is None:
        tokenizer, tok_name, exact, note = load_counting_tokenizer(s, model_shape(s))
        if note:
            notes.append(note)
    splits = {}
    for name, path in split_paths(dataset_dir or s.data.dataset_dir).items():
        lengths, completion = [], []
        for record in read_records(path):
            rendered = render(record, tokenizer, s.data.system_prompt)
            lengths.append(len(rendered.input_ids))
            completion.append(sum(rendered.loss_mask))
        splits[name] = SplitStats(name, lengths, completion, s.data.max_length, s.data.overlong)
    return DatasetStats(splits, tok_name, exact, notes)


def pack_rows(lengths: list[int], max_length: int) -> list[int]:
    """Row lengths after TRL's best-fit-decreasing packing ("bfd": samples truncated, never split)."""
    import bisect

    free: list[tuple[int, int]] = []  # (space left, row index), sorted
    rows: list[int] = []
    for n in sorted((min(x, max_length) for x in lengths), reverse=True):
        i = bisect.bisect_left(free, (n, -1))
        if i < len(free):
            space, row = free.pop(i)
            rows[row] += n
            if space - n > 0:
                bisect.insort(free, (space - n, row))
        else:
            rows.append(n)
            if max_length - n > 0:
                bisect.insort(free, (max_length - n, len(rows) - 1))
    return rows


def expected_batch_max(lengths: list[int], b: int) -> float:
    """E[longest of b samples drawn from ``lengths``]: a padded micro-batch's row length."""
    xs = sorted(lengths)
    n = len(xs)
    if b <= 1:
        return sum(xs) / n
    return sum(x * ((k / n) ** b - ((k - 1) / n) ** b) for k, x in enumerate(xs, start=1))


# --------------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------------


@dataclass
class RunEstimate:
    shape: ModelShape
    gpu: GPU | None
    gpu_detected: bool
    memory: MemoryEstimate
    samples: int                 # training rows (samples, or packed rows)
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    time: TimeEstimate | None
    train_s: float | None
    eval_s: float | None
    evals: int
    dataset: DatasetStats | None
    assumed: str                 # what the peak assumes about the longest micro-batch

    @property
    def fits(self) -> bool | None:
        return None if self.gpu is None else self.memory.card_gib <= self.gpu.vram_gib


def _steps(s: Settings, n_rows: int) -> tuple[int, int, int]:
    micro = s.training.per_device_train_batch_size
    accum = s.training.gradient_accumulation_steps
    batches = math.ceil(n_rows / micro)
    per_epoch = max(batches // accum + int(batches % accum > 0), 1)
    total = s.training.max_steps if s.training.max_steps > 0 else math.ceil(s.training.num_train_epochs * per_epoch)
    return batches, per_epoch, total


def estimate_run(s: Settings, gpu: GPU | None = None, stats: DatasetStats | None = None,
                 shape: ModelShape | None = None, detected: bool = False) -> RunEstimate:
    """Memory and time of the run ``s`` describes; without ``stats``, every micro-batch is batch x max_length."""
    shape = shape or model_shape(s)
    micro = s.training.per_device_train_batch_size
    L = s.data.max_length
    if stats is not None and "train" in stats.splits:
        train = stats.splits["train"]
        lengths = train.trained_lengths()
        if not lengths:
            raise ConfigError(f"train: all {train.count} samples are longer than data.max_length={L} and "
                              "data.overlong is 'drop'")
        comp = [min(c, n) for c, n in zip(train.completion, train.lengths)]
        completion_frac = sum(comp) / max(1, sum(train.lengths))
        if s.data.packing:
            rows = pack_rows(lengths, L)
            peak_rows, peak_len = micro, max(rows)
            tokens_micro = micro * sum(rows) / len(rows)
            row_len = sum(lengths) / len(lengths)  # attention spans a sample, not the packed row
            n_rows = len(rows)
            assumed = f"{micro} packed row(s) of up to {max(rows)} tokens"
        else:
            peak_rows, peak_len = micro, max(lengths)
            row_len = expected_batch_max(lengths, micro)
            tokens_micro = micro * row_len
            n_rows = len(lengths)
            assumed = f"{micro} x {max(lengths)} tokens (the longest sample, padded batch)"
    else:
        completion_frac = 0.3
        peak_rows, peak_len, row_len, tokens_micro, n_rows = micro, L, L, micro * L, 0
        assumed = f"{micro} x {L} tokens (batch x max_length, worst case)"
    memory = estimate_memory(s, shape, peak_len, peak_rows, completion_frac)
    batches, per_epoch, total = _steps(s, n_rows) if n_rows else (0, 0, s.training.max_steps if s.training.max_steps > 0 else 0)
    time = train_s = eval_s = None
    evals = 0
    if gpu is not None:
        time = estimate_step_time(s, shape, gpu, tokens_micro, row_len, completion_frac, memory.checkpointed)
        if total:
            train_s = time.step_s * total
            if s.logging.eval_strategy == "steps" and stats is not None and "validation" in stats.splits:
                evals = total // s.logging.eval_steps + 1  # + the final evaluation
            elif s.logging.eval_strategy == "epoch" and stats is not None and "validation" in stats.splits:
                evals = math.ceil(s.training.num_train_epochs) + 1
            if evals:
                val = stats.splits["validation"].trained_lengths()
                eb = s.training.per_device_eval_batch_size
                batch_len = expected_batch_max(val, eb)
                batches = math.ceil(len(val) / eb)
                eval_s = evals * batches * estimate_eval_batch_s(s, shape, gpu, batch_len * eb, completion_frac)
    return RunEstimate(shape, gpu, detected, memory, n_rows, batches, per_epoch, total, time, train_s, eval_s,
                       evals, stats, assumed)


# --------------------------------------------------------------------------------------------------------
# "won't fit — try ..."
# --------------------------------------------------------------------------------------------------------

SAFE_FRACTION = 0.92  # a suggestion must leave this much of the card unused: other processes, spikes
PRESETS = [("configs/8gb.yaml", 8), ("configs/training_config.yaml", 12), ("configs/16gb.yaml", 16),
           ("configs/24gb.yaml", 24), ("configs/80gb.yaml", 80)]


def _with(s: Settings, changes: dict) -> Settings:
    import copy

    s2 = copy.deepcopy(s)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(s2, section), key, value)
    return s2


def _card_need(s: Settings, shape: ModelShape, stats: DatasetStats | None) -> float:
    return estimate_run(s, None, stats, shape).memory.card_gib


def suggest(s: Settings, gpu: GPU, shape: ModelShape | None = None, stats: DatasetStats | None = None
            ) -> tuple[dict, float] | None:
    """The smallest change (as --set keys) that makes ``s`` fit ``gpu``: checkpointing, then batch 1 (keeping the
    effective batch), then the longest max_length that fits, then rank 8 on q/v. None if nothing fits."""
    shape = shape or model_shape(s)
    changes: dict = {}
    steps = []
    if not s.optimization.gradient_checkpointing:
        steps.append({"optimization.gradient_checkpointing": True})
    b = s.training.per_device_train_batch_size
    if b > 1:
        steps.append({"training.per_device_train_batch_size": 1,
                      "training.gradient_accumulation_steps": s.training.gradient_accumulation_steps * b})
    for step in steps:
        changes.update(step)
        need = _card_need(_with(s, changes), shape, stats)
        if need <= gpu.vram_gib * SAFE_FRACTION:
            return dict(changes), need
    for L in (16384, 8192, 4096, 3072, 2048, 1536, 1024, 768, 512, 256):
        if L >= s.data.max_length:
            continue
        trial = dict(changes, **{"data.max_length": L})
        need = _card_need(_with(s, trial), shape, stats)
        if need <= gpu.vram_gib * SAFE_FRACTION:
            return trial, need
    trial = dict(changes, **{"data.max_length": min(512, s.data.max_length), "lora.r": min(8, s.lora.r)})
    need = _card_need(_with(s, trial), shape, stats)
    return (trial, need) if need <= gpu.vram_gib * SAFE_FRACTION else None


def format_sets(changes: dict) -> str:
    def val(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ",".join(v) + "]"
        return str(v)

    return " ".join(f"--set {k}={val(v)}" for k, v in changes.items())


_PRESET_KEYS = ("model.base_model", "lora.r", "lora.target_modules", "data.max_length", "data.packing",
                "training.per_device_train_batch_size", "optimization.gradient_checkpointing")


def preset_for(gpu: GPU, s: Settings | None = None, stats: DatasetStats | None = None) -> str | None:
    """The guide's preset for a card of this size (the largest class it holds) when it differs from ``s`` and
    fits by this model; None otherwise."""
    from ethsft.config import presets
    from ethsft.config.schema import load_settings

    best = None
    for path, gb in PRESETS:
        if gpu.vram_gib >= gb * 0.95:
            best = path
    if best is None:
        return None
    if s is not None and presets.config(Path(best).name).is_file():
        try:
            p = load_settings(presets.config(Path(best).name))
        except ConfigError:
            return None

        def get(x, k):
            section, key = k.split(".")
            return getattr(getattr(x, section), key)

        if all(get(p, k) == get(s, k) for k in _PRESET_KEYS):
            return None
        try:
            if _card_need(p, model_shape(p), stats) > gpu.vram_gib:
                return None
        except ConfigError:
            return None
    return best


def fit_verdict(s: Settings, gpu: GPU, est: RunEstimate) -> str:
    """'fits (...)' or 'won't fit — try <settings>' for ``s`` on ``gpu``."""
    need = est.memory.card_gib
    if need <= gpu.vram_gib:
        tight = ", tight: other processes on the card may tip it over" if need > gpu.vram_gib * SAFE_FRACTION else ""
        return f"fits: ~{need:.1f} GB of {gpu.vram_gib:.1f} GB ({gpu.vram_gib - need:.1f} GB to spare{tight})"
    found = suggest(s, gpu, est.shape, est.dataset)
    head = f"won't fit: needs ~{need:.1f} GB of {gpu.vram_gib:.1f} GB"
    if found is None:
        return f"{head} — no setting of this model fits; try a smaller base model or a larger GPU"
    changes, after = found
    line = f"{head} — try {format_sets(changes)} (~{after:.1f} GB)"
    preset = preset_for(gpu, s, est.dataset)
    if preset:
        line += f", or the {preset} preset"
    return line


# --------------------------------------------------------------------------------------------------------
# Text report
# --------------------------------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    from ethsft.training.reporting import fmt_duration

    return fmt_duration(seconds) if seconds >= 1 else f"{seconds:.2f}s"


def report(s: Settings, est: RunEstimate) -> str:
    sh = est.shape
    out = [f"Model: {s.model.base_model} ({sh.total_params / 1e9:.2f}B params: {sh.layers} layers, hidden "
           f"{sh.hidden}, MLP {sh.intermediate}, {sh.heads} heads / {sh.kv_heads} KV, vocab {sh.vocab}; "
           f"shape from {sh.source})"]
    lo = s.lora
    tm = lo.target_modules if isinstance(lo.target_modules, str) else ",".join(lo.target_modules)
    out.append(f"LoRA: r {lo.r} on {tm}: {lora_params(s, sh):,} trainable params")
    if est.dataset is not None:
        ds = est.dataset
        out.append(f"Dataset (tokens with {ds.tokenizer}'s tokenizer and chat template, "
                   f"max_length {s.data.max_length}, overlong: {s.data.overlong}):")
        for note in ds.notes:
            out.append(f"  note: {note}")
        for sp in ds.splits.values():
            out.append(f"  {sp.name:<10} {sp.count:>7,} samples  {sp.total:>11,} tokens  mean {sp.total / sp.count:,.0f}"
                       f"  p50 {sp.percentile(50):,}  p95 {sp.percentile(95):,}  max {max(sp.lengths):,}"
                       f"  over max_length: {sp.overlong}")
        t = s.training
        what = "packed rows" if s.data.packing else "samples"
        out.append(f"Steps: {est.samples:,} {what} / ({t.per_device_train_batch_size} micro x "
                   f"{t.gradient_accumulation_steps} accumulation x 1 process) = {est.steps_per_epoch:,} steps per "
                   f"epoch; {est.total_steps:,} steps in all"
                   + (f" (max_steps)" if t.max_steps > 0 else f" ({t.num_train_epochs:g} epochs)"))
    m = est.memory
    out.append(f"Peak VRAM: {m.peak_allocated_gib:.1f} GB allocated by torch, ~{m.card_gib:.1f} GB on the card "
               f"(at {est.assumed})")
    out.append(f"  {m.breakdown()}")
    if est.gpu is None:
        out.append("GPU: none detected and none named (--gpu rtx3060|rtx4090|a100|h100|...): no time estimate")
        return "\n".join(out)
    g = est.gpu
    how = "detected" if est.gpu_detected else "named"
    guess = " (unknown card: throughput guessed)" if g.key == "unknown" else ""
    out.append(f"GPU: {g.name} ({how}): {g.vram_gib:.1f} GB, {g.bf16_tflops:g} bf16 TFLOPs{guess}")
    out.append(f"Fit: {fit_verdict(s, g, est)}")
    if not g.bf16 and s.optimization.bf16:
        out.append("  note: this GPU has no bfloat16; training falls back to float16")
    if est.time is not None:
        tm_ = est.time
        out.append(f"Speed: {tm_.step_s:.2f} s/step ({tm_.micro_step_s:.2f} s per micro-batch, {tm_.bound}), "
                   f"~{tm_.tokens_per_s:,.0f} tokens/s (padded), {tm_.flops_per_token / 1e9:.1f} GFLOP/token")
    if est.train_s is not None:
        line = f"Time: {fmt_s(est.train_s)} for {est.total_steps:,} steps"
        if est.eval_s:
            line += (f" + {fmt_s(est.eval_s)} for {est.evals} evaluation{'s' if est.evals > 1 else ''}"
                     f" = {fmt_s(est.train_s + est.eval_s)}")
        out.append(line + " (model loading not included)")
    elif est.dataset is None:
        out.append("Time: pass --dataset to count steps")
    return "\n".join(out)


def to_json(s: Settings, est: RunEstimate) -> dict:
    d = {"base_model": s.model.base_model, "params": est.shape.total_params,
         "peak_allocated_gb": est.memory.peak_allocated_gib, "card_gb": est.memory.card_gib,
         "memory_parts_gb": est.memory.parts, "outside_allocator_gb": est.memory.outside_allocator,
         "peak_assumes": est.assumed, "steps_per_epoch": est.steps_per_epoch, "total_steps": est.total_steps,
         "gpu": est.gpu.key if est.gpu else None, "fits": est.fits}
    if est.time:
        d.update(step_s=est.time.step_s, micro_step_s=est.time.micro_step_s, tokens_per_s=est.time.tokens_per_s,
                 train_s=est.train_s, eval_s=est.eval_s)
    if est.dataset:
        d["splits"] = {k: {"samples": v.count, "tokens": v.total, "max": max(v.lengths), "overlong": v.overlong}
                       for k, v in est.dataset.splits.items()}
    return d
