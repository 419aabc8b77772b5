"""Ethereum data: transactions (ethereum-etl columns) -> labelled instruction dataset.

Modules: :mod:`.tx` (row validation, calldata decoding, model input),
:mod:`.intent` (the label and its schema), :mod:`.prepare` (streaming,
leak-free split), :mod:`.synth` (realistic sample data: ``generate_rows``, ``write_rows``; its
draws in :mod:`.synth_draws`, its scenarios in :mod:`.synth_transfers` and
:mod:`.synth_dex`), :mod:`.registry` and :mod:`.abi` (bundled token registry
and ABIs in ``data/``). ``ethsft prepare`` / ``ethsft synth``: :mod:`ethsft.cli.data`.
"""
