"""How long will it take? The time model of a QLoRA micro-batch and optimizer step, and the one count of training
FLOPs per token that both it and ``ethsft bench``'s MFU use.

A micro-batch runs on two streams at once, since CUDA kernel launches are asynchronous; the slower one sets the pace:

  host    Python and kernel launches: per pass and decoder layer, the layer's modules (HF, bitsandbytes' 4-bit
          matmul, gradient checkpointing) plus each LoRA adapter (dropout, A, B, scale, add, and their backward);
          3 passes with checkpointing (forward, recompute, backward), 2 without, 2 + the checkpointed fraction
          where the fast path fits checkpointing to a budget; two graph launches under CUDA graphs; plus a fixed
          cost per micro-step (TRL's loss and token metrics, collation). CPU-bound: the same on any GPU.
  device  each pass dequantizes every 4-bit linear to bf16 (read 0.5 B, write 2 B per param: memory-bound, scales
          with the card's bandwidth) + the FLOPs at the card's dense bf16 peak x MFU (scales with TFLOPs; the fast
          path's measured rate where it is on).

Each optimizer step adds a fixed cost and one per LoRA tensor.

Fitted on H100 measurements (benchmarks/results/calibration_h100_2026-11-25.json, 2026-11-25; 7B shape, NF4, bf16): a
checkpointed micro-batch took ~0.57 s whether it held 267 or 2,048 tokens (and 48 micro-batches of 2,048 tokens in
guide_12gb_seq2048_h100_2026-11-25.json averaged ~0.5 s), ~0.37 s without checkpointing, ~0.79 s with LoRA on all seven linears: on
an H100 the 7B run is host-bound, so the host constants are fitted (least squares over the steady micro-steps) and
the device constants are first-principles values that measurement only bounds (the 2,048-token micro-batches imply
MFU >= ~0.19). Slower cards (RTX 3060: 25.6 TFLOPs, 360 GB/s) are device-bound: there the estimate scales by their
TFLOPs and bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from ethsft.config.schema import Settings
from ethsft.fastpath.switches import graphed, packed_rows
from ethsft.planning.hardware import GPU
from ethsft.planning.shapes import ModelShape, lora_params, targeted

MFU = 0.20                     # achieved / peak dense bf16 FLOPs of the 4-bit QLoRA matmuls (first-principles)
DEQUANT_BANDWIDTH_EFF = 0.5    # fraction of memory bandwidth bitsandbytes' 4-bit -> bf16 dequant reaches
HOST_LAYER_PASS_S = 0.0050     # fitted: host seconds per decoder layer per pass (without LoRA)
HOST_LORA_PASS_S = 0.00047     # fitted: host seconds per LoRA adapter per layer per pass
LAUNCH_OVERHEAD_S = 0.0        # fitted: fixed host seconds per micro-step (the free fit gave -0.023 s: none)
OPTIMIZER_STEP_S = 0.018       # fitted: per optimizer step, fixed (scheduler, zero_grad, callbacks)
OPTIMIZER_TENSOR_S = 0.000115  # fitted: per LoRA tensor per optimizer step (grad-norm clipping, paged AdamW)


# The fast path's kernels run the GPU at a measured rate: fitted on its two H100 runs in
# benchmarks/results/bench_graphs_h100_2026-11-25.json (b, 2048-token rows, CUDA graphs: 0.48; b80, 16,384-token rows: 0.51),
# where MFU above is only a lower bound from host-bound runs. CUDA-graphed steps (optimization.cuda_graphs): a
# micro-batch is two graph launches, so the host's share is a constant, and the GPU runs the compiled
# dequantisation.
FAST_PATH_MFU = 0.50
GRAPH_HOST_S = 0.005               # measured: two graph launches (~2.3 ms each) and the step's input copies
FUSED_DEQUANT_BANDWIDTH_EFF = 0.77  # measured: ethsft.fastpath.nf4.fused_dequantize, 57 us per 4096 x 14336 weight


def passes(s: Settings, checkpointed: float | None = None) -> float:
    """Passes over the decoder per micro-batch: forward, (recompute with checkpointing), backward;
    ``checkpointed``: the fraction of layers the fast path's fit checkpoints, where it fits one."""
    if checkpointed is not None:
        return 2 + checkpointed
    return 3 if s.optimization.gradient_checkpointing else 2


def flops_per_token(shape: ModelShape, context: float, decoder_passes: float = 2, lora: int = 0,
                    scored: float = 1.0) -> float:
    """Training FLOPs of one token that attends over ``context`` tokens on average (causal: about half its row).

    Per pass over the decoder, 2 per weight of its linears (forward; the input-gradient backward; the recompute of
    checkpointed layers: frozen 4-bit weights need no weight gradient); ``lora`` adapter parameters also compute
    their weight gradients; attention's QK^T and AV take 4 x context x q_dim per layer forward, twice that backward,
    again when recomputed; the LM head's forward and input gradient on the ``scored`` fraction of tokens (TRL's
    fused head scores completion tokens only). With 2 passes, no LoRA and every token scored this is the bench's
    MFU numerator, 4P + 12 L h c (P the decoder's linears and the LM head)."""
    dense = 2 * shape.linear_params * decoder_passes
    adapters = 2 * lora * (decoder_passes + 1)
    attn = 4 * context * shape.q_dim * shape.layers * (decoder_passes + 1)
    lm_head = 4 * shape.vocab * shape.hidden * scored
    return dense + adapters + attn + lm_head


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
    """Host seconds an optimizer step adds: a fixed cost and one per LoRA tensor (A and B per adapter)."""
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
    """One optimizer step of ``tokens_per_micro``-token micro-batches of rows ``row_len`` long."""
    p = passes(s, checkpointed)
    fpt = flops_per_token(shape, row_len / 2, p, lora_params(s, shape), completion_frac)
    mfu = FAST_PATH_MFU if packed_rows(s) else MFU
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
