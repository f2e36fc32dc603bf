"""Fine-tuning for classification: `accelerate launch -m train.finetune_classification --config finetune_classification
--init outputs/pretrain/model --dataset kermany --data_dir ...`."""

from hf_datasets.errors import run_script

from .config import TrainArgs, parse_args
from .run import run_training

DEFAULTS = {
    "task": "classification", "output_dir": "outputs/classification", "crop_scale": [0.5, 1.0], "rotation": 10.0,
    "jitter_p": 0.5, "blur_p": 0.0, "lr_batch_divisor": 512, "warmup_epochs": 5, "weight_decay": 0.05,
    "weight_decay_end": None, "label_smoothing": 0.1, "clip_grad": None, "layer_decay": 0.75,
}


def main(argv=None) -> dict:
    return run_training(parse_args(TrainArgs, argv, DEFAULTS))


if __name__ == "__main__":
    run_script(main)
