"""Training, evaluation and prediction for cxrgm under Accelerate.

Where things live:
    engine.py      the training loop: `train_one_epoch` and `evaluate` (one place for every task)
    run.py         wiring: accelerator, data, model, optimiser, checkpoints, export (`run_training`)
    checks.py      checks of a run's arguments, model and data, made before it trains
    run_card.py    what a run's model card says of it (`model_card_run`)
    starting_point.py  what a run starts from: --init (folder or Hub id), its processor's inputs, `build_model`
    config.py      arguments from the command line or YAML (same names), saved with each run
    data.py        data sets -> batches of unit-range tensors with labels
    augment.py     batched torch augmentation (GMML views, fine-tuning) on any device
    optim.py       parameter groups, peak lr, lr / weight-decay schedules, clipping, EMA
    checkpoint.py  atomic `save_state` with a manifest of its files, retention, `latest` (newest complete) lookup,
                   the model a checkpoint would export (for evaluate.py and predict.py)
    metrics/       local `evaluate` modules (classification, segmentation)
    export.py      the Hub-loadable model folder with processor, metrics.json and model card
Scripts: pretrain.py, finetune_classification.py, finetune_segmentation.py, evaluate.py, predict.py, probe.py,
publish.py, demo.py.
"""
