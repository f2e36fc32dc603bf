"""Push an exported model or a prepared data set to the Hugging Face Hub.

    HF_TOKEN=... python -m train.publish --model_dir outputs/classification/model --repo_id user/cxrgm-pneumonia
    HF_TOKEN=... python -m train.publish --dataset_dir prepared/kermany --repo_id user/kermany-cxrgm --public

Repos are private unless --public. The model folder must hold weights, config.json, the model code files and
README.md (the card written at export); only those files plus the processor config and metrics.json are sent. An
export holding train.evaluate results (`eval-<split>/`, its default output) has its card written again from its
run.json first, to show them; so has one published with `--license ID`, the licence the card then states for the
weights (its text still names the training data's terms; `other` needs `--license_name` and `--license_link`).
"""

from __future__ import annotations

import argparse
import logging

from hf_datasets.errors import InvalidInputError, run_script
from model_cards import push_dataset, push_model


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.publish", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="export folder of a run (weights, config, code, processor, card)")
    source.add_argument("--dataset_dir", help="prepared data set folder with its README.md dataset card")
    parser.add_argument("--repo_id", required=True, help="user/name or organisation/name on the Hub")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True,
                            help="create the repo private (default; an existing repo keeps its visibility)")
    visibility.add_argument("--public", dest="private", action="store_false",
                            help="create the repo public, or make an existing private one public")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if missing); default main")
    parser.add_argument("--commit_message", default=None, help="commit message")
    parser.add_argument("--identifiers_checked", action="store_true",
                        help="a data set built from a site's own files (imagefolder, manifest, dicomdir, cxr_folder, "
                             "cxr_pool): its patient ids and paths were checked to hold no patient data")
    parser.add_argument("--base_model", default=None,
                        help="Hub repo id of the model this one was fine-tuned from (e.g. where its GMML encoder was "
                             "published), named as such in the card; default: the one the card names")
    parser.add_argument("--license", default=None, metavar="ID",
                        help="the licence the model card states for the weights, as the Hub spells it (lower case: "
                             "apache-2.0, cc-by-nc-4.0, ...; other, with --license_name and --license_link): the card "
                             "is written again from run.json with it, and still names the terms of the training data; "
                             "default: the licence those terms give")
    parser.add_argument("--license_name", default=None, metavar="ID",
                        help="with --license other: a lower-case id naming that licence (e.g. acme-research-only)")
    parser.add_argument("--license_link", default=None, metavar="URL_OR_FILE",
                        help="with --license other: where the licence's text is, an https:// address or LICENSE.md "
                             "(a file of the model folder holding it, sent with the model)")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    """Run the push; returns and prints the commit URL."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    options = dict(private=args.private, revision=args.revision)
    if args.commit_message:
        options["commit_message"] = args.commit_message
    if args.model_dir:
        commit = push_model(args.model_dir, args.repo_id, base_model=args.base_model, licence=args.license,
                            licence_name=args.license_name, licence_link=args.license_link, **options)
    elif args.base_model:
        raise InvalidInputError("--base_model names a model's base model: it goes with --model_dir")
    elif any(value is not None for value in (args.license, args.license_name, args.license_link)):
        raise InvalidInputError("--license sets a model card's licence: it goes with --model_dir (a data set's card "
                                "states its sources' licences)")
    else:
        commit = push_dataset(args.dataset_dir, args.repo_id, identifiers_checked=args.identifiers_checked, **options)
    print(commit.commit_url)
    return commit.commit_url


if __name__ == "__main__":
    run_script(main)
