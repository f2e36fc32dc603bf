"""Model and dataset cards for cxrgm exports, and pushing them to the Hugging Face Hub.

    write_model_card(model_dir, run)          README.md of an exported model, from its run record and the
                                              train.evaluate results in the folder
    write_dataset_card(dataset_dir)           README.md of a prepared data set, naming each source and licence
    push_model(model_dir, repo_id, ...)       create_repo + upload_folder of an export (private by default)
    push_dataset(dataset_dir, repo_id, ...)   the same for a prepared data set
"""

from .dataset_card import write_dataset_card
from .model_card import render_model_card, write_model_card
from .publish import push_dataset, push_model
from .sources import SOURCES, Source, lookup

__all__ = [
    "SOURCES",
    "Source",
    "lookup",
    "push_dataset",
    "push_model",
    "render_model_card",
    "write_dataset_card",
    "write_model_card",
]
