"""`python -m ethsft.train` (what `accelerate launch -m ethsft.train` runs): the `ethsft train` command."""

from ethsft.cli import quiet_cpu_deepspeed
from ethsft.cli.train import main

if __name__ == "__main__":
    quiet_cpu_deepspeed()
    main()
