"""ethsft's formatters in your own TRL script. Run: python trl_formatters.py [prompt_completion|ids|messages]"""

import sys

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ethsft import render, to_ids, to_messages, to_prompt_completion, training_template
from ethsft.model.embedded import resolve

form = sys.argv[1] if len(sys.argv) > 1 else "prompt_completion"
model_path = resolve("embedded:tiny-mistral")  # built offline; or a Hub id: "mistralai/Mistral-7B-Instruct-v0.2"
tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path)

records = [{"instruction": "Extract the structured intent from this Ethereum transaction:",
            "input": f'{{"from":"0xab","to":"0xcd","value":"{i}.5","function":"transfer"}}',
            "output": f'{{"action":"transfer","amount":"{i}.5","status":"success"}}'} for i in range(8)]
dataset = Dataset.from_list(records)

config = {"output_dir": "runs/my-sft", "max_steps": 2, "bf16": torch.cuda.is_available()}  # TRL's defaults otherwise
if form == "prompt_completion":  # TRL trains the completion only, by default
    train = dataset.map(to_prompt_completion, remove_columns=dataset.column_names)
elif form == "ids":  # input_ids + labels, used as they are; control-token strings in the data stay text
    train = dataset.map(lambda r: to_ids(r, tokenizer), remove_columns=dataset.column_names)
elif form == "messages":  # the assistant turns only: the template with {% generation %} markers is needed
    tokenizer.chat_template = training_template(tokenizer)
    train = dataset.map(to_messages, remove_columns=dataset.column_names)
    config["assistant_only_loss"] = True
else:
    sys.exit(f"unknown form {form!r}: prompt_completion, ids or messages")

trainer = SFTTrainer(model=model, args=SFTConfig(**config), train_dataset=train, processing_class=tokenizer)

# Every token of the first record, its id and whether the loss falls on it: exactly what TRL trains.
print(render(records[0], tokenizer).pretty(tokenizer))
assert trainer.train_dataset[0]["labels"] == render(records[0], tokenizer).labels
trainer.train()
