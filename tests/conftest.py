"""Shared fixtures: everything is built locally (tiny model, real Mistral tokenizer, data): no downloads."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
from ethsft.data.records import INSTRUCTION  # noqa: E402  (the one the package writes)


@pytest.fixture(scope="session", autouse=True)
def ethsft_cache(tmp_path_factory):
    """One cache for the session, so the tiny model and tokenizer are built once."""
    cache = os.environ.get("ETHSFT_TEST_CACHE") or str(tmp_path_factory.mktemp("ethsft-cache"))
    os.environ["ETHSFT_CACHE"] = cache
    return Path(cache)


@pytest.fixture(scope="session")
def tokenizer(ethsft_cache):
    from ethsft.model.embedded import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_path(ethsft_cache):
    from ethsft.model.embedded import resolve

    return resolve("embedded:tiny-mistral")


def make_record(rng: random.Random) -> dict:
    action = rng.choice(["transfer", "swap", "approve", "wrap"])
    tx = {"from": "0x%040x" % rng.getrandbits(160), "to": "0x%040x" % rng.getrandbits(160),
          "value": str(rng.randint(0, 10**6) / 1000), "function": action}
    return {"instruction": INSTRUCTION, "input": json.dumps(tx, separators=(",", ":")),
            "output": json.dumps({"action": action, "status": "success"}, separators=(",", ":"))}


def write_split(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    """train/validation/test.jsonl with 16/8/4 short records."""
    rng = random.Random(0)
    root = tmp_path / "datasets"
    root.mkdir()
    for split, n in (("train", 16), ("validation", 8), ("test", 4)):
        write_split(root / f"{split}.jsonl", [make_record(rng) for _ in range(n)])
    return root


def tiny_settings(dataset: Path, output: Path, *sets: str):
    """The tiny CPU preset pointed at ``dataset``/``output``, with a few fast-test overrides."""
    from ethsft.config.schema import load_settings

    return load_settings(REPO / "configs" / "tiny_cpu.yaml",
                         {"data.dataset_dir": str(dataset), "training.output_dir": str(output)},
                         ["training.num_train_epochs=1", "training.per_device_train_batch_size=4",
                          "logging.logging_steps=1", "logging.eval_steps=2", "logging.save_steps=2", *sets])


# SmolLM2-135M-Instruct's chat template, as its tokenizer ships it (ChatML with a default system message).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="session")
def chatml_tokenizer():
    """A throwaway byte-level BPE tokenizer with SmolLM2's special tokens and chat template, trained in-process
    (the ChatML counterpart of the real Mistral tokenizer; no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    rng = random.Random(0)
    corpus = [json.dumps(make_record(rng)) for _ in range(200)] + [SMOLLM2_TEMPLATE]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  unk_token="<|endoftext|>", pad_token="<|im_end|>")
    tok.chat_template = SMOLLM2_TEMPLATE
    return tok


def wait_for(predicate, proc, what: str, timeout: float = 180) -> None:
    """Poll ``predicate`` until it holds; fail (killing ``proc``) if ``proc`` exits first or time runs out."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"{what} never happened (exit code {proc.poll()})")


def random_lora_adapter(model_path: str, out: Path) -> Path:
    """A LoRA adapter on every linear layer of ``model_path`` with random non-zero B matrices, so it visibly changes
    the base model's outputs; saved with the model's tokenizer in ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                  task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_path).save_pretrained(out)
    return out
