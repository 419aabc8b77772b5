"""Script entry for launchers that want a file rather than a module, e.g. the `deepspeed` launcher:
    deepspeed --num_gpus 2 launch/train.py --deepspeed deepspeed/zero2.json --config configs/training_config.yaml --dataset data/datasets/ --output models/run-ds
"""

from ethsft.cli.train import main

if __name__ == "__main__":
    main()
