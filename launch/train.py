"""Script entry for launchers that want a file rather than a module, from a checkout:
    deepspeed --num_gpus 2 launch/train.py --deepspeed zero2 --config training_config --dataset data/datasets/ --output models/run-ds
From any folder the `deepspeed` launcher takes the module instead:
    deepspeed --num_gpus 2 --module ethsft.train --deepspeed zero2 --config training_config --dataset data/datasets/ --output models/run-ds
"""

from ethsft.cli.train import main

if __name__ == "__main__":
    main()
