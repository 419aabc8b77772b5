"""Per-row errors of the Ethereum data pipeline (fatal ones are ``ethsft.data.records.DataError``)."""


class RowError(ValueError):
    """A per-row value problem; the message starts with the column name.

    Caught by :func:`ethsft.eth.prepare.prepare`, which writes the row to
    ``rejects.jsonl`` with this message as its reason.
    """
