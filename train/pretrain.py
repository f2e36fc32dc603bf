"""GMML pretraining: `accelerate launch -m train.pretrain --config gmml_pretrain [--flag value ...]`."""

from hf_datasets.errors import run_script

from .config import TrainArgs, parse_args
from .run import run_training

DEFAULTS = {"task": "pretraining", "output_dir": "outputs/pretrain", "eval_split": None}


def main(argv=None) -> dict:
    return run_training(parse_args(TrainArgs, argv, DEFAULTS))


if __name__ == "__main__":
    run_script(main)
