"""predict: a 1 MB transaction is cut to the run's data.max_length before generation, never handed over whole."""

import json

from ethsft.evaluation.predict import predict
from ethsft.inference.loading import as_record, load_for_inference


def test_a_megabyte_transaction_is_cut_not_generated_on(tiny_model_path, capsys):
    loaded = load_for_inference("embedded:tiny-mistral")
    capsys.readouterr()
    assert loaded.limit == (2048, "truncate")  # no run summary: the config's defaults
    tx = json.dumps({"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "value": "0", "input": "0x" + "ab" * 500_000})
    (result,) = predict(loaded, [as_record(tx)], max_new_tokens=2)
    assert result["input"] == as_record(tx)["input"] and isinstance(result["raw"], str)
    err = capsys.readouterr().err
    assert err.startswith("ethsft: input 1: ") and err.endswith(
        " tokens cut in the middle to data.max_length=2048 (data.overlong: truncate)\n")
