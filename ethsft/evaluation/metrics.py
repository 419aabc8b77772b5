"""Scoring predicted intents against references, field by field. Pure functions: no model, no I/O.

An intent is any JSON object; nested objects are flattened to dotted paths (``token_in.amount``), so
the scoring is generic over the intent schema. Values compare as follows:

* 0x-hex strings (addresses, selectors): case-insensitively (checksummed vs lower-case is the same address);
* numbers and numeric strings: as exact decimals, so ``"1.50" == "1.5" == 1.5`` (amounts are the point);
* everything else (symbols, actions, null, booleans): exactly.

A field is correct when the prediction holds it with an equal value; a missing field is wrong; a field the
reference lacks is an *extra* field, counted separately. Exact match = every reference field correct and no
extra field. An unparsable prediction (not JSON, or not a JSON object) gets every field wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

INVALID = "invalid"  # confusion-table column for predictions that are not a JSON object
MISSING = "missing"  # ... for JSON objects without the field
_HEX = re.compile(r"^0[xX][0-9a-fA-F]+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_intent(text: str) -> dict | None:
    """The JSON object in ``text`` (surrounding whitespace ignored), or None when it is not one."""
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def flatten(obj: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [x, y]}`` -> ``{"a.b": 1, "c.0": x, "c.1": y}``; empty containers stay leaves."""
    flat: dict[str, Any] = {}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, (dict, list)) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):  # True == 1 in Python; a boolean is never an amount
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def values_equal(reference: Any, prediction: Any) -> bool:
    """Equality under the rules in the module docstring."""
    if isinstance(reference, str) and isinstance(prediction, str) and _HEX.match(reference) and _HEX.match(prediction):
        return reference.lower() == prediction.lower()
    ref_num, pred_num = _as_decimal(reference), _as_decimal(prediction)
    if ref_num is not None and pred_num is not None:
        return ref_num == pred_num
    return type(reference) is type(prediction) and reference == prediction


@dataclass
class Verdict:
    """How one prediction scored against its reference."""

    valid_json: bool
    fields: dict[str, bool]  # reference field path -> correct
    extra: list[str] = field(default_factory=list)  # predicted paths the reference lacks

    @property
    def exact_match(self) -> bool:
        return self.valid_json and all(self.fields.values()) and not self.extra

    def to_dict(self) -> dict:
        return {"valid_json": self.valid_json, "exact_match": self.exact_match, "fields": self.fields,
                "extra_fields": self.extra}


def score(reference: dict, prediction: dict | None) -> Verdict:
    """Field-by-field verdict of one ``prediction`` (None = unparsable) against ``reference``."""
    ref = flatten(reference)
    if prediction is None:
        return Verdict(False, {path: False for path in ref})
    pred = flatten(prediction)
    fields = {path: path in pred and values_equal(value, pred[path]) for path, value in ref.items()}
    return Verdict(True, fields, [path for path in pred if path not in ref])


OTHER = "other"  # a predicted label no reference has


def _label(intent: dict | None, key: str) -> str:
    if intent is None:
        return INVALID
    if key not in intent:
        return MISSING
    value = intent[key]
    return value if isinstance(value, str) else json.dumps(value)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def compute_metrics(references: list[dict], predictions: list[dict | None], confusion_field: str = "action") -> dict:
    """Aggregate metrics over paired references and parsed predictions (None = unparsable).

    Returns ``samples``, ``valid_json_rate``, ``exact_match``, ``field_accuracy`` (correct reference fields
    / all reference fields, pooled), ``fields`` (per path: correct, total, accuracy), ``extra_fields`` (per
    path: how many predictions added it), ``samples_with_extra_fields`` and ``confusion`` (reference
    ``confusion_field`` -> predicted value -> count, with ``missing`` and ``invalid`` columns).
    """
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    verdicts = [score(r, p) for r, p in zip(references, predictions)]
    per_field: dict[str, list[int]] = {}
    extra: dict[str, int] = {}
    for v in verdicts:
        for path, ok in v.fields.items():
            tally = per_field.setdefault(path, [0, 0])
            tally[0] += ok
            tally[1] += 1
        for path in v.extra:
            extra[path] = extra.get(path, 0) + 1
    confusion: dict[str, dict[str, int]] = {}
    known = {_label(r, confusion_field) for r in references}
    for r, p in zip(references, predictions):
        row = confusion.setdefault(_label(r, confusion_field), {})
        col = _label(p, confusion_field)
        col = col if col in known or col in (MISSING, INVALID) else OTHER  # free text would make the table unreadable
        row[col] = row.get(col, 0) + 1
    n = len(verdicts)
    correct = sum(c for c, _ in per_field.values())
    total = sum(t for _, t in per_field.values())
    return {
        "samples": n,
        "valid_json_rate": _rate(sum(v.valid_json for v in verdicts), n),
        "exact_match": _rate(sum(v.exact_match for v in verdicts), n),
        "field_accuracy": _rate(correct, total),
        "fields": {path: {"correct": c, "total": t, "accuracy": _rate(c, t)}
                   for path, (c, t) in sorted(per_field.items())},
        "extra_fields": dict(sorted(extra.items())),
        "samples_with_extra_fields": sum(bool(v.extra) for v in verdicts),
        "confusion_field": confusion_field,
        "confusion": {k: dict(sorted(v.items())) for k, v in sorted(confusion.items())},
    }


def headline(metrics: dict, prefix: str = "intent_") -> dict[str, float]:
    """The few scalars worth logging beside eval_loss (and naming in ``metric_for_best_model``)."""
    out = {f"{prefix}valid_json": metrics["valid_json_rate"], f"{prefix}exact_match": metrics["exact_match"],
           f"{prefix}field_accuracy": metrics["field_accuracy"]}
    for name in ("action", "protocol"):
        if name in metrics["fields"]:
            out[f"{prefix}{name}_accuracy"] = metrics["fields"][name]["accuracy"]
    return out


def format_table(metrics: dict) -> str:
    """A readable report: headline rates, per-field accuracy, extra fields, the confusion table."""
    lines = [f"Samples: {metrics['samples']}",
             f"Valid JSON:      {100 * metrics['valid_json_rate']:6.2f}%",
             f"Exact match:     {100 * metrics['exact_match']:6.2f}%",
             f"Field accuracy:  {100 * metrics['field_accuracy']:6.2f}%", ""]
    if metrics["fields"]:
        width = max(len(p) for p in metrics["fields"]) + 2
        lines.append(f"{'field':<{width}}{'accuracy':>9}{'correct':>9}{'total':>7}")
        for path, f in metrics["fields"].items():
            lines.append(f"{path:<{width}}{100 * f['accuracy']:8.1f}%{f['correct']:>9}{f['total']:>7}")
    if metrics["extra_fields"]:
        lines += ["", f"Extra fields (in {metrics['samples_with_extra_fields']} predictions): "
                  + ", ".join(f"{p} x{n}" for p, n in metrics["extra_fields"].items())]
    confusion = metrics["confusion"]
    if confusion:
        cols = sorted({c for row in confusion.values() for c in row} - {MISSING, INVALID})
        cols += [c for c in (MISSING,) if any(MISSING in row for row in confusion.values())] + [INVALID]
        first = max(len(r) for r in confusion) + 2
        width = max(max(len(c) for c in cols) + 2, 6)
        lines += ["", f"Confusion of '{metrics['confusion_field']}' (rows: reference, columns: prediction)",
                  f"{'':<{first}}" + "".join(f"{c:>{width}}" for c in cols)]
        for ref, row in confusion.items():
            lines.append(f"{ref:<{first}}" + "".join(f"{row.get(c, 0):>{width}}" for c in cols))
    return "\n".join(lines)
