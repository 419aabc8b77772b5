"""`ethsft bench`: guide settings vs TRL's best vs ethsft's fast path, measured on this GPU."""

from __future__ import annotations

import click

from ethsft.planning.hardware import PRESET_CARDS


@click.command("bench")
@click.option("--model-shape", default="mistral-7b", show_default=True,
              help="Embedded random-weight shape: mistral-7b, or tiny-mistral for a CPU smoke run.")
@click.option("--modes", default="a,a',b", show_default=True,
              help=f"Comma list of a, a', b, b80 or a preset ({', '.join(PRESET_CARDS)}), each optionally "
                   "NAME:knob=v;knob=v (attn, liger, ckpt, rows, "
                   "batch, accum, vram, packing, path, offload, compile, graphs; a preset takes rows, batch, accum, "
                   "vram, compile, graphs, card); see ethsft/experiments/bench.py.")
@click.option("--vram", type=float, default=12.0, show_default=True, help="Memory budget in GiB (peak allocated).")
@click.option("--steps", type=int, default=6, show_default=True, help="Measured steps per mode.")
@click.option("--warmup", type=int, default=2, show_default=True, help="Warm-up steps per mode (not measured).")
@click.option("--samples", type=int, default=2000, show_default=True, help="Synth transactions generated.")
@click.option("--out", default=None, help="Write the JSON report here.")
@click.option("--isolate/--no-isolate", default=None, help="One process per mode (default: on with a GPU).")
@click.option("--mode-timeout", type=int, default=180, show_default=True, help="Seconds per isolated mode.")
@click.option("--cap", default="auto", show_default=True,
              help="Memory cap per mode: auto (its card's memory minus 0.5 GiB of CUDA context: 11.5 GiB for a, a', "
                   "b and the 12GB preset), none, or GiB for every mode.")
@click.option("--peak-tflops", type=float, default=None,
              help="Peak bf16 dense TFLOP/s (default: ethsft's GPU table, by the GPU name).")
def main(model_shape, modes, vram, steps, warmup, samples, out, isolate, mode_timeout, cap, peak_tflops):
    """Benchmark the guide's settings (a), TRL's best built-in setup (a') and ethsft's fast path (b)."""
    from ethsft.experiments.bench import parse_modes, run_bench
    from ethsft.model.embedded import SHAPES

    if model_shape not in SHAPES:
        raise click.ClickException(f"--model-shape {model_shape!r}: choose one of {', '.join(SHAPES)}")
    try:
        parse_modes(modes)
        if cap not in ("auto", "none"):
            float(cap)
    except ValueError as e:
        raise click.UsageError(str(e) if "mode" in str(e) or "preset" in str(e)
                               else f"--cap {cap!r}: give auto, none or a number of GiB") from None
    report = run_bench(model_shape, modes, vram, warmup, steps, samples, out, isolate, mode_timeout, peak_tflops,
                       echo=click.echo, cap=cap)
    failed = [r["mode"] for r in report["modes"] if r.get("error")]
    if failed:
        click.echo(f"ethsft bench: {len(failed)} of {len(report['modes'])} modes failed ({', '.join(failed)})", err=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
