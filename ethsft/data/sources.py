"""Where a dataset comes from: a folder of JSONL splits, a `datasets` folder written by ``save_to_disk``, or a
Hugging Face Hub dataset id. Every source gives the same rows (one of TRL's dataset formats per split:
``records.check_record``), checked with the same errors, each naming the source, split and row."""

from __future__ import annotations

from pathlib import Path

from ethsft.data.formatting import FORMATS, FORMATS_TEXT, row_format
from ethsft.data.records import SPLITS, DataError, check_record, read_records, split_paths


def source_kind(source: str | Path) -> str:
    """``jsonl`` (a folder with train.jsonl), ``disk`` (a save_to_disk folder), ``local`` (another local dataset
    folder, e.g. a Hub dataset repo cloned: ``datasets.load_dataset`` reads it) or ``hub`` (not a local path)."""
    path = Path(source)
    if path.is_dir():
        if (path / "train.jsonl").is_file():
            return "jsonl"
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return "disk"
        return "local"
    if path.exists():
        raise DataError(f"{source}: not a folder; --dataset takes a folder of JSONL splits, a save_to_disk folder "
                        "or a Hub dataset id")
    if str(source).startswith((".", "/", "~")) or str(source).count("/") > 1:
        raise DataError(f"dataset folder not found: {source} (expected train.jsonl, validation.jsonl, test.jsonl; "
                        "make one with `ethsft prepare`)")
    return "hub"


def split_names(data_args) -> dict[str, str]:
    """ethsft's split -> the source's split name, from data.train_split / validation_split / test_split."""
    return {split: getattr(data_args, f"{split}_split") for split in SPLITS}


def read_splits(source: str | Path, config: str | None = None, names: dict[str, str] | None = None
                ) -> dict[str, list[dict]]:
    """``{split: records}`` for train (required), validation and test (when present; an empty validation.jsonl or
    test.jsonl counts as absent). ``names`` maps ethsft's
    split names to the source's (e.g. ``{"validation": "dev"}``); ``config`` is the Hub dataset's configuration."""
    kind = source_kind(source)
    if kind == "jsonl":
        read = {name: read_records(path, allow_empty=name != "train") for name, path in split_paths(source).items()}
        return {name: records for name, records in read.items() if records}
    names = {split: (names or {}).get(split) or split for split in SPLITS}
    found = _load(source, kind, config)
    if names["train"] not in found:
        raise DataError(f"{source}: no '{names['train']}' split (it has: {', '.join(found) or 'none'}); name the "
                        "training split with data.train_split")
    out = {}
    for split, theirs in names.items():
        if theirs in found:
            out[split] = _records(found[theirs], f"{source} [{theirs}]")
    return out


def _load(source, kind: str, config: str | None) -> dict:
    import datasets

    try:
        if kind == "disk":
            loaded = datasets.load_from_disk(str(source))
        else:
            loaded = datasets.load_dataset(str(source), config)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{source}: dataset not found ({e}). A Hub id needs the hub (or its cache with "
                        "HF_HUB_OFFLINE=1); a local folder needs train.jsonl, a save_to_disk layout or data files"
                        ) from None
    except ValueError as e:  # e.g. a config the dataset does not have
        raise DataError(f"{source}: {e}") from None
    except Exception as e:  # network, auth, gated: say what and where, not a traceback
        raise DataError(f"{source}: could not load the dataset ({type(e).__name__}: {e})") from None
    if isinstance(loaded, datasets.Dataset):  # one split: train
        return {"train": loaded}
    return dict(loaded)


def _records(ds, where: str) -> list[dict]:
    kind = row_format(ds.column_names)
    if kind is None:
        lacking = "; ".join(f"{'/'.join(needed)} lacks {', '.join(repr(k) for k in needed if k not in ds.column_names)}"
                            for needed in FORMATS.values() if set(needed) & set(ds.column_names))
        raise DataError(f"{where}: no dataset format matches the columns ({', '.join(ds.column_names)}"
                        f"{'; ' + lacking if lacking else ''}); expected the columns of {FORMATS_TEXT}")
    if len(ds) == 0:
        raise DataError(f"{where}: empty split; expected rows with the columns of {FORMATS_TEXT}")
    return [check_record(row, f"{where} row {i}") for i, row in enumerate(ds.select_columns(list(FORMATS[kind])))]
