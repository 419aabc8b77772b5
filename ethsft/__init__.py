"""ethsft: QLoRA SFT of Mistral chat models that extract the structured intent of Ethereum transactions.

The formatters are the public API for other TRL projects; the rest is reached through the `ethsft` command.
"""

import logging

# bitsandbytes' CPU backend tries to fetch an optional kernel from the hub and warns when it can't; it then
# runs its own CPU path, so the warning says nothing a user can act on.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from ethsft.data.formatting import (  # noqa: E402
    load_template, prompt_messages, render, to_ids, to_messages, to_prompt_completion, to_text, training_template,
)

__all__ = ["load_template", "prompt_messages", "render", "to_ids", "to_messages", "to_prompt_completion", "to_text",
           "training_template"]
