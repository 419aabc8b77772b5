"""`ethsft evaluate`, `ethsft infer`, `ethsft merge`: click commands for the main group (cli.add_command)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from ethsft.cli.hub import private_option, push_or_exit
from ethsft.config.schema import ConfigError
from ethsft.data.records import DataError
from ethsft.filenames import METRICS_FILE, PREDICTIONS_FILE

_ERRORS = (ConfigError, DataError, ValueError, OSError)

model_option = click.option("--model", "model", required=True,
                            help="Adapter dir (base from adapter_config.json), merged/plain model dir, hub id, "
                                 "or embedded:tiny-mistral (the untrained baseline).")
base_option = click.option("--base-model", default=None,
                           help="Base for an adapter dir; must be the model the adapter was trained on.")
quant_option = click.option("--load-in-4bit", is_flag=True, help="Quantize the base to 4-bit nf4 (less GPU memory).")


def _fail(e: Exception):
    raise click.ClickException(str(e)) from None


def _stopped(what: str, stop, e, unit: str, written: str):
    """A first SIGTERM/SIGINT stopped generation (``stopping.SignalStop``): one line, exit 143/130."""
    click.echo(f"ethsft: {what} stopped by {stop.name} after {e.done} of {e.total} {unit}; {written}", err=True)
    raise SystemExit(stop.exit_code)


def default_output(model: str, dataset: str) -> Path:
    """<model dir>/eval-<dataset>, or eval/<model name>-<dataset> when the model is no local dir."""
    stem = Path(dataset).stem if Path(dataset).is_file() else "test"
    if Path(model).is_dir():
        return Path(model) / f"eval-{stem}"
    return Path("eval") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}-{stem}"


@click.command("evaluate")
@model_option
@click.option("--dataset", required=True, help="Instruction JSONL (e.g. data/datasets/test.jsonl) or a dataset dir "
                                               "(its test.jsonl).")
@base_option
@quant_option
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Sequences generated together.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Default: from the longest reference answer.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N records only.")
@click.option("--system-prompt", default=None, help="Default: the training run's data.system_prompt, if any.")
@click.option("--output", default=None, help=f"Folder for {PREDICTIONS_FILE} and {METRICS_FILE} "
                                             "[default: <model dir>/eval-<dataset name>].")
def evaluate(model, dataset, base_model, load_in_4bit, batch_size, max_new_tokens, limit, system_prompt, output):
    """Greedy-generate on a dataset and score the intents field by field. A first SIGTERM/SIGINT during
    generation stops it within a generate step and writes nothing (exit 143/130)."""
    from ethsft.evaluation.evaluate import evaluate_model
    from ethsft.evaluation.metrics import format_table
    from ethsft.evaluation.stopping import SignalStop, StopRequested

    from ethsft.cli.paths import check_output

    out = Path(output) if output is not None else default_output(model, dataset)
    check_output(output if output is not None else out, folder=True)  # before the model loads and generates
    stop = SignalStop()  # on while generating only: a signal while the model loads ends the process as usual
    try:
        metrics = evaluate_model(model, dataset, batch_size, max_new_tokens, load_in_4bit, base_model, out,
                                 system_prompt, limit, progress=True, stop=stop)
    except StopRequested as e:
        _stopped("evaluation", stop, e, "samples", f"nothing written to {out}/ ({PREDICTIONS_FILE} and "
                                                   f"{METRICS_FILE} are written only for a complete evaluation)")
    except _ERRORS as e:
        _fail(e)
    click.echo(f"\nModel: {metrics['model']}" + (f" (base {metrics['base_model']})" if metrics["adapter"] else ""))
    click.echo(format_table(metrics))
    click.echo(f"\n{metrics['samples_per_second']} samples/s; {PREDICTIONS_FILE} and {METRICS_FILE} in {out}/")


@click.command("infer")
@model_option
@click.argument("transactions", nargs=-1)
@click.option("--file", "files", multiple=True, type=click.Path(dir_okay=False),
              help="A .jsonl (records or transactions), .json or decoded .csv file (repeatable).")
@click.option("--row", type=int, default=None, help="With one CSV/JSONL --file: only its N-th data row (1-based).")
@base_option
@quant_option
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=384, show_default=True)
@click.option("--system-prompt", default=None, help="Default: the training run's data.system_prompt, if any.")
@click.option("--output", default=None, type=click.Path(dir_okay=False), help="Write JSONL here instead of stdout.")
def infer(model, transactions, files, row, base_model, load_in_4bit, batch_size, max_new_tokens, system_prompt,
          output):
    """Extract intents: TRANSACTIONS are JSON strings (a transaction, its model input, or a decoded.csv row as
    JSON); '-' reads JSON lines from stdin. Prints one JSON line per transaction: {"input", "intent", "raw"}.
    A first SIGTERM/SIGINT during generation stops it within a generate step; nothing is printed or written."""
    from ethsft.evaluation.stopping import SignalStop, StopRequested
    from ethsft.evaluation.predict import predict
    from ethsft.inference.loading import as_record, load_for_inference, read_inputs

    stop = SignalStop()  # on while generating only
    try:
        records = []
        for i, tx in enumerate(transactions, start=1):  # each checked before the model loads
            records += ([as_record(line, f"stdin line {n}") for n, line in enumerate(sys.stdin, start=1)
                         if line.strip()] if tx == "-" else [as_record(tx, f"argument {i}")])
        for f in files:
            records += read_inputs(f)
        if row is not None:
            if len(files) != 1 or transactions:
                raise click.UsageError("--row picks a row of exactly one --file")
            if not 1 <= row <= len(records):
                raise click.UsageError(f"--row {row}: {files[0]} has {len(records)} rows")
            records = [records[row - 1]]
        if not records:
            raise click.UsageError("nothing to infer: pass a JSON transaction, '-' for stdin, or --file")
        if output is not None:
            from ethsft.cli.paths import check_output

            check_output(output)  # before the model loads and generates
        loaded = load_for_inference(model, load_in_4bit=load_in_4bit, base_model=base_model)
        results = predict(loaded, records, batch_size, max_new_tokens, system_prompt,
                          progress=len(records) > batch_size, stop=stop)
    except StopRequested as e:
        _stopped("inference", stop, e, "transactions", "nothing written")
    except _ERRORS as e:
        _fail(e)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if output:
        Path(output).write_text(lines, encoding="utf-8")
        click.echo(f"{len(results)} intents written to {output}", err=True)
    else:
        click.echo(lines, nl=False)


@click.command("merge")
@click.option("--adapter", required=True, help="Adapter dir (adapter_config.json + adapter_model.safetensors).")
@click.option("--output", required=True, help="Folder for the merged model (written whole, then renamed in).")
@click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default="bfloat16",
              show_default=True, help="Weights dtype of the merged model.")
@base_option
@click.option("--overwrite", is_flag=True, help="Replace an existing --output.")
@click.option("--push-to-hub", "push_to_hub", default=None, metavar="[USER/]NAME",
              help="Then push the merged model (weights, tokenizer, chat template, loss plot, a model card saying it "
                   "is merged) to this Hugging Face Hub repo. Token: HF_TOKEN or `hf auth login`.")
@private_option
def merge(adapter, output, dtype, base_model, overwrite, push_to_hub, hub_private_repo):
    """Merge a LoRA adapter into its (un-quantized) base: a standalone model for vLLM / from_pretrained."""
    from ethsft.inference.merge import merge_adapter
    from ethsft.config.schema import repo_id_problem

    if push_to_hub and repo_id_problem(push_to_hub):  # before the merge, not after it
        raise click.UsageError(f"--push-to-hub: {repo_id_problem(push_to_hub)}")
    try:
        out = merge_adapter(adapter, output, dtype, base_model, overwrite)
    except _ERRORS as e:
        _fail(e)
    click.echo(f"Merged model saved to: {out}/")
    if push_to_hub:
        push_or_exit(out, push_to_hub, hub_private_repo, "merged")
