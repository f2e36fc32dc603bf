"""GMML pretraining: `accelerate launch -m train.pretrain --config gmml_pretrain [--flag value ...]`."""

from .config import TrainArgs, parse_args
from .run import exit_process, run_training

DEFAULTS = {"task": "pretraining", "output_dir": "outputs/pretrain", "eval_split": None}


def main(argv=None) -> dict:
    return run_training(parse_args(TrainArgs, argv, DEFAULTS))


if __name__ == "__main__":
    main()
    exit_process()
