"""Click commands ``prepare`` and ``synth`` (registered in the main ``ethsft`` group)."""

from __future__ import annotations

import click

from ethsft.filenames import PREPARE_SUMMARY_FILE, REJECTS_FILE


@click.command()
@click.option("--input", "input_path", type=click.Path(dir_okay=False),
              help="decoded.csv / .jsonl / .parquet (ethereum-etl column names, pre-joined).")
@click.option("--transactions", type=click.Path(dir_okay=False),
              help="ethereum-etl transactions export (.csv / .jsonl / .parquet), instead of --input.")
@click.option("--receipts", type=click.Path(dir_okay=False),
              help="ethereum-etl receipts export, joined to --transactions by hash.")
@click.option("--token-transfers", "token_transfers", type=click.Path(dir_okay=False),
              help="ethereum-etl token_transfers export, joined by transaction_hash (optional).")
@click.option("--abi", type=click.Path(), help="Your ABIs, keyed by contract address: a folder of <address>.json "
              "files or one JSON file (Etherscan format); the bundled ABIs win for selectors they know.")
@click.option("--tokens", type=click.Path(dir_okay=False),
              help="A token list (tokenlists.org JSON: chainId, address, symbol, decimals); wins over the bundled "
                   "registry for its addresses.")
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help=f"Directory for train/validation/test.jsonl, {REJECTS_FILE}, {PREPARE_SUMMARY_FILE}.")
@click.option("--split", nargs=3, type=float, default=(0.7, 0.15, 0.15), show_default=True,
              help="Train, validation and test fractions (must sum to 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Key of the hash-based split.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--token-stats/--no-token-stats", default=True, show_default=True,
              help="Report prompt/completion lengths in Mistral tokens (sample of 2000 records).")
def prepare(input_path, transactions, receipts, token_transfers, abi, tokens, output_dir, split, seed, progress,
            token_stats):
    """Turn transactions into an instruction dataset (train/validation/test.jsonl)."""
    from ethsft.data.records import DataError
    from ethsft.eth.prepare import check_split, format_summary
    from ethsft.eth.prepare import prepare as run

    if input_path is not None and (transactions or receipts or token_transfers):
        raise click.UsageError("give --input or --transactions/--receipts[/--token-transfers], not both")
    if input_path is None and not (transactions and receipts):
        raise click.UsageError("give --input, or both --transactions and --receipts (ethereum-etl exports)")
    try:
        check_split(split)
    except DataError as e:
        raise click.BadParameter(str(e), param_hint="--split") from None
    try:
        summary = run(input_path, output_dir, split=split, seed=seed, progress=progress,
                      count_tokens=token_stats, transactions=transactions, receipts=receipts,
                      token_transfers=token_transfers, abi=abi, tokens=tokens)
    except DataError as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_summary(summary))


@click.command()
@click.option("--rows", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Number of transactions to generate.")
@click.option("--output", required=True, type=click.Path(dir_okay=False),
              help="Output file; the format follows the extension (.csv, .jsonl, .parquet).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mix", type=click.Choice(["default", "legacy", "v3-unknown"]), default="default", show_default=True,
              help="Transaction mix. default: today's mainnet (Universal Router and 1inch swaps, Permit2, Lido, Aave, "
                   "Seaport besides transfers); legacy: the first mix (V2/V3 routers only; the README's accuracy "
                   "table); v3-unknown (a held-out set unlike legacy training data): 3x its Uniswap V3 swaps, most in "
                   "multicall, 4x the unregistered tokens.")
def synth(rows, output, seed, mix):
    """Generate a realistic synthetic decoded.csv (real tokens, selectors and calldata)."""
    import os

    from ethsft.cli.paths import check_output

    check_output(output)  # before any row is generated
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".csv", ".jsonl", ".parquet"):
        raise click.BadParameter(f"unsupported format {ext or '(none)'!r} (use .csv, .jsonl or .parquet)",
                                 param_hint="--output")
    from ethsft.eth.synth import generate_rows, write_rows

    n = write_rows(output, generate_rows(rows, seed, mix))
    click.echo(f"wrote {n} rows to {output}")
