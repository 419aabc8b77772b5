"""``ethsft doctor``: verify the hardware and software a run needs, as a checklist (✓ ok, ! warning, ✗ broken).

Every check runs on a CPU-only machine too and says what that means. With a config, the predicted peak VRAM
of that run is set against the card (``ethsft.planning.estimate``). The exit code is 1 when a required check fails.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ethsft.units import GiB
from ethsft.config.hf import TRACKERS, usable_report_to  # noqa: F401  (doctor reports them)
from ethsft.config.schema import Settings

MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "info": "·"}
MIN_PYTHON = (3, 10)

# report_to value -> (module that must import, pip extra)


@dataclass
class Check:
    status: str  # ok | warn | fail | info
    label: str
    detail: str = ""

    def line(self) -> str:
        return f"  {MARKS[self.status]} {self.label}" + (f": {self.detail}" if self.detail else "")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({platform.system()} {platform.machine()})"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check("fail", "Python", f"{text}; ethsft needs >= {'.'.join(map(str, MIN_PYTHON))}")
    return Check("ok", "Python", text)


def nvidia_smi() -> dict | None:
    """Driver version and GPU names from nvidia-smi, or None where there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [r.split(",", 1) for r in out.stdout.strip().splitlines() if "," in r]
    if out.returncode != 0 or not rows:
        return None
    return {"driver": rows[0][0].strip(), "gpus": [r[1].strip() for r in rows]}


def check_torch_cuda() -> list[Check]:
    import torch

    checks = []
    cuda_build = torch.version.cuda
    smi = nvidia_smi()
    checks.append(Check("ok", "torch", f"{torch.__version__}" + (f" (CUDA {cuda_build} build)" if cuda_build
                                                                  else " (CPU build)")))
    if not torch.cuda.is_available():
        if smi and not cuda_build:
            checks.append(Check("fail", "CUDA", f"nvidia-smi sees {', '.join(smi['gpus'])} (driver {smi['driver']}) "
                                "but torch is a CPU build: install a CUDA build of torch"))
        elif smi:
            checks.append(Check("fail", "CUDA", f"nvidia-smi sees {', '.join(smi['gpus'])} (driver {smi['driver']}) "
                                f"but torch (CUDA {cuda_build}) cannot use it: the driver may be older than the "
                                "CUDA runtime torch was built for, or CUDA_VISIBLE_DEVICES hides it"))
        else:
            checks.append(Check("warn", "CUDA", "no GPU: this is a CPU-only machine. The CPU presets "
                                "(configs/tiny_cpu.yaml, configs/demo_cpu.yaml: `ethsft demo`), --dry-run, estimate "
                                "and tests work here; "
                                "a 7B QLoRA run needs an NVIDIA GPU (>= 8 GB with configs/8gb.yaml)"))
        return checks
    n = torch.cuda.device_count()
    driver = smi["driver"] if smi else "unknown (nvidia-smi not found)"
    checks.append(Check("ok", "CUDA", f"runtime {cuda_build}, driver {driver}, {n} GPU{'s' if n > 1 else ''} visible"))
    for i in range(n):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        status = "ok" if total / GiB >= 7.5 else "warn"
        more = "" if status == "ok" else " (below the 8 GB of the smallest 7B preset)"
        checks.append(Check(status, f"GPU {i}", f"{props.name}, compute capability {props.major}.{props.minor}, "
                            f"VRAM {total / GiB:.1f} GB total, {free / GiB:.1f} GB free{more}"))
    if torch.cuda.is_bf16_supported():
        checks.append(Check("ok", "bfloat16", "supported"))
    else:
        checks.append(Check("warn", "bfloat16", "not supported on this GPU: training falls back to float16 "
                            "(optimization.fp16), with loss scaling"))
    return checks


def check_bitsandbytes() -> Check:
    """A real NF4 (double-quant) matmul with its backward, on the GPU if there is one, else on the CPU."""
    import torch

    v = _version("bitsandbytes")
    if v is None:
        return Check("fail", "bitsandbytes", "not installed: 4-bit loading needs it (pip install bitsandbytes)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            import bitsandbytes as bnb
            import bitsandbytes.functional as F

            dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if device == "cuda" \
                else torch.float32
            gen = torch.Generator().manual_seed(0)
            w = torch.randn(256, 128, generator=gen).to(device, dtype)
            x = torch.randn(8, 128, generator=gen).to(device, dtype).requires_grad_(True)
            qw, state = F.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
            wd = F.dequantize_4bit(qw, state)
            y = bnb.matmul_4bit(x, qw.t(), quant_state=state)
            y.float().sum().backward()
            ref = x.detach().float() @ wd.float().t()
            err = ((y.detach().float() - ref).norm() / ref.norm()).item()
            qerr = ((wd.float() - w.float()).norm() / w.float().norm()).item()
            gerr = ((x.grad.float() - wd.float().sum(0)).norm() / wd.float().sum(0).norm()).item()
    except Exception as e:
        return Check("fail", "bitsandbytes", f"{v}: 4-bit matmul on {device} failed: {type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}")
    tol = 2e-2 if dtype != torch.float32 else 1e-4
    if err > tol or gerr > tol or qerr > 0.2:
        return Check("fail", "bitsandbytes", f"{v}: 4-bit matmul on {device} is wrong (output error {err:.2e}, "
                     f"grad error {gerr:.2e}, NF4 error {qerr:.3f})")
    return Check("ok", "bitsandbytes", f"{v}: NF4 double-quant matmul + backward on {device} ({str(dtype)[6:]}) "
                 f"correct (output error {err:.1e}, NF4 weight error {qerr:.3f})")


def check_optional_kernels() -> list[Check]:
    import torch

    checks = []
    fa = _version("flash-attn") or _version("flash_attn")
    if fa:
        ok = torch.cuda.is_available() and torch.cuda.get_device_capability(0)[0] >= 8
        checks.append(Check("ok" if ok else "warn", "flash-attn", f"{fa}" + ("" if ok else
                            ": needs an Ampere or newer GPU; sdpa is used")))
    else:
        checks.append(Check("warn", "flash-attn", "not installed (optional): attention runs on PyTorch sdpa; "
                            "model.attn_implementation=flash_attention_2 falls back to sdpa"))
    lk = _version("liger-kernel") or _version("liger_kernel")
    checks.append(Check("ok", "Liger kernels", lk) if lk else
                  Check("warn", "Liger kernels", "not installed (optional: pip install 'ethsft[liger]' for "
                        "optimization.use_liger_kernel)"))
    return checks


def check_deepspeed() -> Check:
    v = _version("deepspeed")
    if v is None:
        return Check("warn", "DeepSpeed", "not installed (optional: multi-GPU ZeRO launchers only)")
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            from deepspeed.ops.op_builder import CPUAdamBuilder, FusedAdamBuilder

            ops = {"cpu_adam": CPUAdamBuilder().is_compatible(False),
                   "fused_adam": FusedAdamBuilder().is_compatible(False)}
    except Exception as e:
        return Check("warn", "DeepSpeed", f"{v}: ops not usable ({type(e).__name__}: {e}); ZeRO launchers may fail")
    text = ", ".join(f"{k} {'compatible' if ok else 'NOT compatible'}" for k, ok in ops.items())
    return Check("ok" if all(ops.values()) else "warn", "DeepSpeed", f"{v}: ops {text}")


def _gb(n: float) -> str:
    return f"{n / GiB:.1f} GB"


def check_disk(s: Settings, model_bytes: float | None) -> Check:
    from ethsft.model import embedded

    name = s.model.base_model
    if embedded.is_embedded(name):
        where = embedded.cache_root()
    else:
        where = Path(s.model.cache_dir or os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface")
    probe = where.expanduser().resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = model_bytes or 15 * GiB
    cached = (where / f"models--{name.replace('/', '--')}").exists() or Path(name).expanduser().exists()
    if cached:
        return Check("ok", "Disk", f"{_gb(free)} free at {where} (the model is already there)")
    if free < need * 1.1:
        status = "fail" if model_bytes is not None and not embedded.is_embedded(name) else "warn"
        return Check(status, "Disk", f"{_gb(free)} free at {where}; the model download needs ~{_gb(need)} "
                     "(set model.cache_dir to a larger disk)")
    return Check("ok", "Disk", f"{_gb(free)} free at {where} for the model cache (a 7B download is ~{_gb(need)})")


def check_hf_token(s: Settings | None) -> Check:
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:
        token = None
    if token:
        src = "HF_TOKEN environment variable" if (os.environ.get("HF_TOKEN") or
                                                  os.environ.get("HUGGING_FACE_HUB_TOKEN")) else "token file"
        return Check("ok", "Hugging Face token", f"set ({src}; not shown)")
    gated = s is not None and s.model.base_model.lower().startswith("meta-llama/")
    if gated:
        return Check("warn", "Hugging Face token", f"not set, and {s.model.base_model} is gated: accept its "
                     "license on the hub and run `hf auth login` (or set HF_TOKEN) before training")
    return Check("warn", "Hugging Face token", "not set (only gated models such as Llama-2 need one: "
                 "`hf auth login` or HF_TOKEN)")


def check_trackers(s: Settings | None) -> list[Check]:
    have = [n for n, (m, _) in TRACKERS.items() if _installed(m)]
    missing = [n for n in TRACKERS if n not in have]
    checks = [Check("ok" if have else "info", "Tracking", (f"installed: {', '.join(have)}" if have else "none installed")
                    + (f"; not installed: {', '.join(missing)} (pip install 'ethsft[<name>]')" if missing else ""))]
    if s is not None:
        _, notes = usable_report_to(s.logging.report_to)
        checks += [Check("warn", "Tracking", n) for n in notes]
    checks.append(Check("ok", "Optuna", f"{_version('optuna')} (ethsft tune)") if _installed("optuna") else
                  Check("warn", "Optuna", "not installed: `ethsft tune` needs it (pip install 'ethsft[tune]')"))
    return checks


def check_config(s: Settings, label: str, card: float | None = None) -> list[Check]:
    """The config's predicted peak VRAM against this machine's GPU: fits, or what to change. ``card`` (GB): judge
    it as a card of that size instead, with PyTorch capped at what such a card leaves it (hardware.card_cap_gib)."""
    import dataclasses

    import torch

    from ethsft.model import embedded
    from ethsft.planning.advice import fit_verdict
    from ethsft.planning.estimate import estimate_run
    from ethsft.planning.hardware import GPUS, detect_gpu
    from ethsft.planning.shapes import model_shape

    try:
        shape = model_shape(s)
    except Exception as e:
        return [Check("fail", "Config", f"{label}: {e}")]
    gpu = detect_gpu()
    capped = []
    if card and gpu is not None:
        from ethsft.planning.hardware import cap_memory, card_cap_gib

        cap = card_cap_gib(card)
        cap_memory(cap)
        # the estimate sizes the whole card (context included), so it is judged against the card; torch gets the cap
        gpu = dataclasses.replace(gpu, name=f"{gpu.name} capped at {cap:g} GiB (a {card:g} GB card)", vram_gib=card)
        capped = [Check("info", "Memory cap", f"PyTorch capped at {cap:g} GiB (set_per_process_memory_fraction): "
                        f"a {card:g} GB card less {card - cap:g} GiB of CUDA context")]
    est = estimate_run(s, gpu, None, shape, detected=gpu is not None)
    mem = est.memory
    what = (f"{label}: {s.model.base_model} ({shape.total_params / 1e9:.2f}B), LoRA r {s.lora.r}, "
            f"{est.assumed}, checkpointing {'on' if s.optimization.gradient_checkpointing else 'off'}: "
            f"predicted peak ~{mem.card_gib:.1f} GB")
    if gpu is None:
        tiny = embedded.is_embedded(s.model.base_model) and shape.total_params < 1e8
        if tiny:
            return [Check("ok", "Config", f"{label}: {s.model.base_model} ({shape.total_params / 1e6:.1f}M params): "
                          f"~{mem.peak_allocated_gib:.2f} GB at {est.assumed}; trains on this CPU (float32)")]
        cards = [g for g in GPUS.values() if g.vram_gib >= mem.card_gib]
        hint = f"; fits e.g. {cards[0].key} ({cards[0].vram_gib:.0f} GB)" if cards else ""
        return [Check("fail", "Config", f"{what}: needs a CUDA GPU, and this machine has none{hint}")]
    verdict = fit_verdict(s, gpu, est)
    free = torch.cuda.mem_get_info(0)[0] / GiB
    checks = capped + [Check("ok" if verdict.startswith("fits") else "fail", "Config",
                             f"{what} on {gpu.name}: {verdict}")]
    if verdict.startswith("fits") and mem.card_gib > free:
        checks.append(Check("warn", "Config", f"only {free:.1f} GB of the card is free now: other processes hold "
                            "the rest"))
    checks.append(Check("info", "Config", "the peak assumes every micro-batch is max_length long; "
                        "`ethsft estimate --dataset ...` uses the real sample lengths"))
    return checks


def run_checks(settings: Settings | None = None, label: str = "", card: float | None = None) -> list[Check]:
    checks = [check_python()]
    checks += check_torch_cuda()
    checks.append(check_bitsandbytes())
    checks += check_optional_kernels()
    checks.append(check_deepspeed())
    model_bytes = None
    if settings is not None:
        try:
            from ethsft.planning.shapes import model_shape

            model_bytes = model_shape(settings).total_params * 2
        except Exception:
            model_bytes = None
    checks.append(check_disk(settings or Settings(), model_bytes))
    checks.append(check_hf_token(settings))
    checks += check_trackers(settings)
    if settings is not None:
        checks += check_config(settings, label, card)
    return checks


def summary(checks: list[Check]) -> str:
    fails = [c for c in checks if c.status == "fail"]
    warns = [c for c in checks if c.status == "warn"]
    if fails:
        return f"✗ {len(fails)} problem{'s' if len(fails) > 1 else ''} to fix ({', '.join(c.label for c in fails)})" \
               + (f"; {len(warns)} warning{'s' if len(warns) > 1 else ''}" if warns else "")
    cpu_only = any(c.label == "CUDA" and c.status == "warn" for c in checks)
    head = "✓ ready for CPU runs (tiny preset); no GPU for 7B training" if cpu_only else "✓ ready to train"
    return head + (f" ({len(warns)} warning{'s' if len(warns) > 1 else ''})" if warns else "")


def render(checks: list[Check]) -> str:
    return "\n".join(["ethsft doctor", *[c.line() for c in checks], "", summary(checks)])


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == "fail" for c in checks) else 0
