"""Errors raised by the Ethereum data pipeline."""


class DataError(ValueError):
    """A structural problem with an input file or option (fatal).

    The message names the file and, where it applies, the row and the column.
    Per-row value problems are not raised: they go to ``rejects.jsonl``.
    """


class RowError(ValueError):
    """A per-row value problem; the message starts with the column name.

    Caught by :func:`ethsft.eth.prepare.prepare`, which writes the row to
    ``rejects.jsonl`` with this message as its reason.
    """
