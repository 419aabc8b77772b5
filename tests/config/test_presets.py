"""Shipped files named from any folder: by stem, with suffix, by the checkout-relative path, or by an alias."""

from __future__ import annotations

from pathlib import Path

import pytest

from ethsft.config import presets
from ethsft.config.schema import ConfigError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "ethsft" / "presets"  # links to the checkout's folders (copies in a wheel)
LISTED = ("8gb, 12gb (= training_config), 16gb, 24gb, 80gb, demo_cpu, demo_cpu_random, guide_12gb, smollm2_gpu, "
          "smollm2_gpu_fast, tiny_cpu, training_config")


@pytest.fixture
def empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_preset_is_named_by_stem_name_checkout_path_or_alias(empty_folder):
    for name in ("tiny_cpu", "tiny_cpu.yaml", "configs/tiny_cpu.yaml"):
        assert presets.resolve_config_path(name) == SHIPPED / "configs" / "tiny_cpu.yaml", name
    assert presets.resolve_config_path("12gb") == SHIPPED / "configs" / "training_config.yaml"
    assert presets.resolve_config_path("training_config") == SHIPPED / "configs" / "training_config.yaml"
    for name in ("zero2", "zero2.json", "deepspeed/zero2.json"):
        assert presets.resolve_deepspeed_path(name) == SHIPPED / "deepspeed" / "zero2.json", name


def test_a_file_of_that_name_in_the_working_folder_wins(empty_folder):
    (empty_folder / "tiny_cpu").write_text("model: {}\n")
    (empty_folder / "configs").mkdir()
    (empty_folder / "configs" / "12gb").write_text("model: {}\n")
    assert presets.resolve_config_path("tiny_cpu") == Path("tiny_cpu")
    assert presets.resolve_config_path("configs/12gb") == Path("configs/12gb")
    assert presets.resolve_config_path("tiny_cpu.yaml") == SHIPPED / "configs" / "tiny_cpu.yaml"


def test_unknown_names_and_other_folders_fail_listing_the_shipped_names(empty_folder):
    for name in ("nope", "elsewhere/tiny_cpu.yaml", "configs/nope.yaml", ""):
        with pytest.raises(ConfigError) as e:
            presets.resolve_config_path(name)
        assert str(e.value) == f"config file not found: {name} (shipped: {LISTED}; `ethsft presets` describes them)"
    with pytest.raises(ConfigError) as e:
        presets.resolve_deepspeed_path("zero9")
    assert str(e.value) == ("DeepSpeed config not found: zero9 (shipped: zero2, zero2_offload, zero3; "
                            "`ethsft presets` describes them)")


def test_every_shipped_file_has_a_one_line_summary_from_its_header():
    entries = presets.catalogue()
    assert [e.name for e in entries if e.kind == "configs"] == LISTED.replace(" (= training_config)", "").split(", ")
    assert [e.name for e in entries if e.kind == "launch"] == [
        "ddp.yaml", "multi_node.yaml", "single_gpu.yaml", "zero2.yaml", "zero3.yaml"]
    assert all(e.summary and "\n" not in e.summary and len(e.summary) <= 110 for e in entries)
    by_name = {e.name: e.summary for e in entries}
    assert by_name["training_config"] == ("Default config: QLoRA on Mistral-7B-Instruct-v0.2 for a 12GB card "
                                          "(RTX 3060 class)")
    assert by_name["12gb"] == "= training_config"
    assert by_name["zero3.json"] == "ZeRO-3: parameters sharded too."
    assert by_name["tiny_cpu"] == ("Tiny CPU preset: the embedded default (a 2-layer Mistral-architecture model with "
                                   "random weights and the ...")


def test_no_shipped_file_name_is_claimed_by_two_kinds():
    # `ethsft presets --path zero2.yaml` must name one file; a bare stem may name two and is refused there
    for entry in presets.catalogue():
        filename = entry.path.name if entry.kind != "configs" else f"{entry.name}.yaml"
        assert presets.find_anywhere(filename) == [entry.path], filename
    assert presets.find_anywhere("zero2") == [SHIPPED / "launch" / "zero2.yaml", SHIPPED / "deepspeed" / "zero2.json"]
