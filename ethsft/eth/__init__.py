"""Ethereum data: transactions (ethereum-etl columns) -> labelled instruction dataset.

Modules: :mod:`.tx` (row validation, calldata decoding, model input),
:mod:`.intent` (the label and its schema), :mod:`.prepare` (streaming,
leak-free split), :mod:`.synth` (realistic sample data), :mod:`.cli`
(``ethsft prepare`` / ``ethsft synth``), :mod:`.registry` and :mod:`.abi`
(bundled token registry and ABIs in ``data/``).
"""
