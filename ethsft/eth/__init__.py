"""Ethereum data: transactions (ethereum-etl columns) -> labelled instruction dataset.

Modules: :mod:`.tx` (row validation, calldata decoding, model input),
:mod:`.intent` (the label and its schema; today's protocols in
:mod:`.intent_defi`, shared values in :mod:`.intent_values`),
:mod:`.universal_router` (Universal Router commands), :mod:`.prepare`
(streaming, leak-free split; rows from :mod:`.readers`, ethereum-etl exports
joined by :mod:`.etl_join`, a user's ABIs and token list from
:mod:`.user_data`), :mod:`.synth` (realistic sample data: ``generate_rows``,
``write_rows``; its draws and mixes in :mod:`.synth_draws`, its scenarios in
:mod:`.synth_transfers`, :mod:`.synth_dex` and :mod:`.synth_defi`),
:mod:`.registry` and :mod:`.abi` (bundled token registry and ABIs in
``data/``). ``ethsft prepare`` / ``ethsft synth``: :mod:`ethsft.cli.data`.
"""
