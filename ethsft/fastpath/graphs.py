"""CUDA-graph micro-batches (``optimization.cuda_graphs``, with the fast path's packed rows).

Rows of ~2048 tokens need little activation memory, but on their own they run host-bound: each of the ~100
decoder-layer calls of a micro-batch costs more host time (Python, peft and bitsandbytes dispatch, ~40 kernel
launches) than its GPU time. Here every micro-batch is padded to one shape and its forward and backward are
captured once as two CUDA graphs (``torch.cuda.make_graphed_callables``); each later micro-batch is copied into
the graphs' inputs and replayed, one launch for the whole pass.

* One shape (``RowShape``): ``data.max_length`` tokens, a fixed number of sample bounds. The padding is one more
  sample of ignored tokens (labels -100), cut into pieces no longer than the longest real sample (the attention
  kernel's grid is sized by that length); bounds left over are empty samples at the end. Neither touches the
  loss or any real sample.
* The loss is TRL's: summed next-token NLL over ``num_items_in_batch`` (the completion tokens of the whole
  accumulated batch), the LM head applied in checkpointed chunks (no full-row logits kept).
* What is not graphed runs the trainer's own eager step: a row that does not fit the shape (warned),
  evaluation, and everything on CPU. A capture that fails stops the run with the reason.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

HEAD_CHUNK = 512  # LM-head rows per checkpointed chunk: ~60 MiB of fp32 logits at a time for Mistral's vocabulary


@dataclass(frozen=True)
class RowShape:
    """The one shape every graphed micro-batch has: ``rows`` tokens, ``bounds`` entries of ``cu_seq_lens`` (the
    samples, the padding cut into pieces of at most ``longest`` tokens, then empty samples), and ``longest``, the
    longest sample or padding piece: the attention kernel's ``max_seqlen``, which sizes its grid."""

    rows: int
    bounds: int
    longest: int


def row_shape(rows: int, dataset=None) -> RowShape:
    """The graphed shape for a TRL-packed ``dataset`` (its ``seq_lengths`` column: the most samples in a row and
    the longest sample); without one, rows of samples of 32 tokens on average and ``longest`` = ``rows``."""
    if dataset is not None and "seq_lengths" in getattr(dataset, "column_names", ()):
        lengths = dataset["seq_lengths"]
        most = max((len(row) for row in lengths), default=1)
        longest = min(rows, max((max(row) for row in lengths if row), default=rows))
    else:
        most, longest = max(8, rows // 32), rows
    return RowShape(rows, most + math.ceil(rows / longest) + 1, longest)


def static_inputs(inputs: dict, shape: RowShape, pad_id: int, num_items=None) -> tuple | None:
    """A padding-free packed micro-batch (TRL's collator: one row, ``cu_seq_lens_q``) as the graphs' fixed-shape
    inputs ``(input_ids, position_ids, cu_seq_lens, targets, num_items)``, built with device ops only (no host
    sync); None where it does not fit ``shape``."""
    rows, longest = shape.rows, shape.longest
    ids, cu, labels = inputs.get("input_ids"), inputs.get("cu_seq_lens_q"), inputs.get("labels")
    if ids is None or cu is None or labels is None or ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] > rows:
        return None
    n = ids.shape[1]
    pad = rows - n
    cuts = len(range(n + longest, rows, longest))  # inner bounds of the padding, cut into pieces of <= longest
    if cu.numel() + cuts + (1 if pad else 0) > shape.bounds:
        return None
    dev = ids.device
    input_ids = F.pad(ids, (0, pad), value=pad_id)
    positions = inputs.get("position_ids")
    if positions is None:
        positions = torch.arange(n, device=dev).unsqueeze(0)
    position_ids = torch.cat([positions, torch.arange(pad, device=dev, dtype=positions.dtype).unsqueeze(0)], dim=1)
    full = torch.full((shape.bounds,), rows, dtype=torch.int32, device=dev)  # the padding's last bound, then empty
    full[:cu.numel()] = cu.to(torch.int32)
    if cuts:
        full[cu.numel():cu.numel() + cuts] = torch.arange(n + longest, rows, longest, dtype=torch.int32, device=dev)
    targets = F.pad(labels[:, 1:], (0, pad + 1), value=-100)  # next-token targets, as the model's loss shifts
    if num_items is None:  # transformers then averages per micro-batch (and divides by accumulation itself)
        num_items = (targets != -100).sum()
    count = torch.as_tensor(num_items, device=dev).to(torch.float32).clamp(min=1).reshape(())
    return input_ids, position_ids, full, targets, count


def _nll_sum(head, hidden, targets):
    return F.cross_entropy(head(hidden).float(), targets, ignore_index=-100, reduction="sum")


def chunked_nll(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = HEAD_CHUNK) -> torch.Tensor:
    """Summed NLL of ``targets`` (-100 ignored) under ``head(hidden)``, ``chunk`` rows at a time, each chunk's
    logits recomputed in backward instead of kept."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for i in range(0, hidden.shape[0], chunk):
        total = total + checkpoint(_nll_sum, head, hidden[i:i + chunk], targets[i:i + chunk],
                                   use_reentrant=False, preserve_rng_state=False)
    return total


class PackedLoss(torch.nn.Module):
    """The training loss of one packed row from ``static_inputs``' tensors: the decoder (fast-path attention
    reads the sample bounds), then ``chunked_nll`` over the count. Holds the trainer's model, so its
    ``parameters()`` are the model's."""

    def __init__(self, model, longest: int, autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.longest = longest
        self.autocast_dtype = autocast_dtype

    def forward(self, input_ids, position_ids, cu, targets, count):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        cast = (torch.autocast(input_ids.device.type, dtype=self.autocast_dtype, cache_enabled=False)
                if self.autocast_dtype else contextlib.nullcontext())
        with cast:
            hidden = base.model(input_ids=input_ids, position_ids=position_ids, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                max_length_q=self.longest, max_length_k=self.longest, use_cache=False).last_hidden_state
            return chunked_nll(base.lm_head, hidden.flatten(0, 1), targets.flatten()) / count


class GraphedLoss:
    """Captures ``PackedLoss`` on the first micro-batch that fits, replays it for every later one."""

    def __init__(self, trainer, shape: RowShape):
        mixed = getattr(trainer.accelerator, "mixed_precision", "no")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(mixed))
        self.module = PackedLoss(trainer.model, shape.longest, dtype)
        self.shape = shape
        self.pad_id = getattr(trainer.processing_class, "pad_token_id", None) or 0
        self.graphed = None
        self.replays = self.eager = 0

    def __call__(self, inputs: dict, num_items=None) -> torch.Tensor | None:
        static = static_inputs(inputs, self.shape, self.pad_id, num_items)
        if static is None:
            if self.eager == 0:
                warnings.warn(f"ethsft cuda_graphs: a micro-batch does not fit the graphed shape {self.shape}; such "
                              "micro-batches run eagerly", stacklevel=2)
            self.eager += 1
            return None
        if self.graphed is None:
            try:
                self._capture(static)
            except Exception as e:  # a failed capture leaves CUDA's random state unusable: no eager fallback
                raise RuntimeError(f"CUDA-graph capture of the training step failed ({type(e).__name__}: {e}). "
                                   "Set optimization.cuda_graphs: false to train without graphs, or, where this "
                                   "process already captured another model's graphs, train in a fresh process."
                                   ) from e
        self.replays += 1
        return self.graphed(*static)

    def _capture(self, sample: tuple) -> None:
        # one eager pass first (lazy initialisation, compilation), its memory handed back before capture: the
        # graphs' own pool then holds one pass's activations, not two
        params = [p for p in self.module.parameters() if p.requires_grad]
        torch.autograd.grad(self.module(*sample), params)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        with torch.autocast("cuda", enabled=False):
            self.graphed = torch.cuda.make_graphed_callables(self.module, sample, num_warmup_iters=0)


def unsupported(model, processes: int = 1, deepspeed: bool = False) -> str | None:
    """Why the graphed step would not train ``model`` as the eager one does, or None. ``PackedLoss`` needs a
    decoder (``.model``) and a plain LM head (``.lm_head``, no logit soft-capping), and it calls the model past
    the DDP/DeepSpeed wrapper, whose gradient hooks expect their own forward: one process only."""
    if processes > 1 or deepspeed:
        return "several processes or DeepSpeed: one process only"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (hasattr(base, "model") and hasattr(base, "lm_head")):
        return f"{type(base).__name__} has no .model decoder and .lm_head"
    if getattr(base.config, "final_logit_softcapping", None):
        return f"{type(base).__name__} soft-caps its logits"
    return None
