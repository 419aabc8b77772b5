"""ethsft: QLoRA SFT of Mistral chat models that extract the structured intent of Ethereum transactions.

The formatters are the public API for other TRL projects; the rest is reached through the `ethsft` command.
"""

from .formatting import load_template, prompt_messages, render, to_messages, to_prompt_completion, to_text

__all__ = ["load_template", "prompt_messages", "render", "to_messages", "to_prompt_completion", "to_text"]
