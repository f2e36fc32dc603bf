"""Push an exported model or a prepared data set to the Hugging Face Hub (`create_repo` + `upload_folder`).

Only the files a Hub user needs are sent (weights, config, model code, processor, card, metrics); a folder missing
any of the required ones is refused, and so is one whose text files mention a local path. Pushing to a repo that
already holds an earlier version deletes the weights (models) or Arrow and JSON files (data sets) that the new folder
no longer has; other files added to the repo are kept. A public push makes an existing private repo public. The card
is pointed at the repo pushed to (usage examples, title, model-index name), shows the `train.evaluate` results found
in the export and states the licence the publisher names (written again from its run.json for either), and is left
as it was when the push fails.
The token comes from the argument, else `HF_TOKEN` (or a saved `huggingface-cli login`); it is never printed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, get_token

from hf_datasets.errors import InputError, InvalidInputError, MissingInputError

from .dataset_card import holds_site_identifiers, prepared_with, saved_splits_and_labels
from .model_card import LICENCE_FILE, LICENCE_FILE_HEADER, evaluations, write_model_card
from .privacy import find_local_paths, is_local_path

logger = logging.getLogger(__name__)

MODEL_OPTIONAL = ("preprocessor_config.json", "metrics.json", "model.safetensors.index.json", LICENCE_FILE)
TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".yml", ".csv")
# .partial: a shard a killed run left unfinished; cache-*.arrow and tmp*: what `datasets` writes beside a split's
# shards when a loaded split is mapped or filtered. Each name is matched in the folder and in its split folders.
DATASET_SKIPPED = tuple(f"{folder}{name}" for name in ("cache-*.arrow", "*.lock", "tmp*", "*.partial")
                        for folder in ("", "*/"))
# Files of an earlier push that a new one replaces (deleted from the repo when the new folder lacks them)
MODEL_REPLACED = ("*.safetensors", "*.safetensors.index.json", *MODEL_OPTIONAL)
DATASET_REPLACED = ("*.arrow", "*.json", LICENCE_FILE)
# a licence id as the Hub spells them (apache-2.0, cc-by-nc-4.0, llama3.1, other): huggingface_hub ships no list
LICENCE_ID = re.compile(r"[a-z0-9][a-z0-9.-]*")


def _hub_code_files() -> tuple[str, ...]:
    from modeling_cxrgm.modeling_gmvit import HUB_FILES

    return HUB_FILES


def model_files(model_dir) -> list[str]:
    """Names of the files of an export that go to the Hub; raises if a required one is missing."""
    model_dir = Path(model_dir)
    _check_folder(model_dir, "model")
    weights = sorted(p.name for p in model_dir.glob("*.safetensors"))
    required = ["config.json", "README.md", *_hub_code_files()]
    missing = [name for name in required if not (model_dir / name).is_file()]
    if not weights:
        missing.append("*.safetensors (weights)")
    if missing:
        inside = model_dir / "model"
        hint = f"; it is a run's folder: pass {inside}" if (inside / "config.json").is_file() else \
            "; export the model and write its card first"
        raise MissingInputError(f"The export {model_dir.name!r} lacks {missing}{hint}")
    optional = [name for name in MODEL_OPTIONAL if (model_dir / name).is_file()]
    if "preprocessor_config.json" not in optional:
        logger.warning("%s has no preprocessor_config.json: users will need to build the processor themselves",
                       model_dir.name)
    return sorted({*required, *weights, *optional})


def _check_folder(folder: Path, kind: str) -> None:
    """Raise naming `folder` as given (the user's own path, never published) when it is missing or a file."""
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise MissingInputError(f"The {kind} folder {str(folder)!r} {what}")


def check_no_local_paths(folder, names, label_names=()) -> None:
    """Refuse to publish text files that mention local paths (they may reveal user names or data locations); the
    folder's `label_names` are data, not paths (see `find_local_paths`)."""
    leaks = {}
    for name in names:
        path = Path(folder) / name
        if path.suffix in TEXT_SUFFIXES and path.is_file():
            found = find_local_paths(path.read_text(encoding="utf-8", errors="replace"), label_names)
            if found:
                leaks[name] = found[:3]
    if leaks:
        raise InvalidInputError(f"Refusing to publish local paths: {leaks}. Remove them (e.g. re-export) and try "
                                "again.")


def _label_names(model_dir: Path) -> list[str]:
    """The class names in the export's config.json (none for a model without labels or an unreadable config)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except ValueError:
        return []
    labels = config.get("id2label") if isinstance(config, dict) else None
    return [str(name) for name in labels.values()] if isinstance(labels, dict) else []


def point_card_at(model_dir: Path, repo_id: str, revision: str | None = None) -> str | None:
    """Make the card name `repo_id`, the repo it is pushed to, at `revision` (a branch; None: main): the export may
    name another repo (its run's --hub_model_id) or a placeholder (none given). The usage examples' quoted repo ids
    change, with `revision=` where it is not main, and with them the title and the model-index name (the repo's
    name); the rest of the card is kept. Returns the card's text before the change, None when nothing changed."""
    card = model_dir / "README.md"
    before = text = card.read_text(encoding="utf-8")
    named = set(re.findall(r'(?:from_pretrained\(|model=)"([^"\s]+/[^"\s]+)"', text)) - {repo_id}
    name = repo_id.split("/")[-1]
    for other in named:
        text = text.replace(f'"{other}"', f'"{repo_id}"')
        other_name = re.escape(other.split("/")[-1])
        text = re.sub(rf"^- name: {other_name}$", f"- name: {name}", text, count=1, flags=re.MULTILINE)
        text = re.sub(rf"^# {other_name}$", f"# {name}", text, count=1, flags=re.MULTILINE)
    pinned = f', revision="{revision}"' if revision else ""
    text = re.sub(rf'"{re.escape(repo_id)}"(?:, revision="[^"]*")?(?=, trust_remote_code=True)',
                  lambda match: f'"{repo_id}"{pinned}', text)
    if text == before:
        return None
    card.write_text(text, encoding="utf-8")
    logger.info("The card now names %s%s%s", repo_id, f" at revision {revision}" if revision else "",
                f" (it named {', '.join(sorted(named))})" if named else "")
    return before


def check_licence(licence: str | None, licence_name: str | None = None, licence_link: str | None = None,
                  model_dir: Path | None = None) -> None:
    """Refuse a `licence` that is no Hub licence id (lower case: apache-2.0, cc-by-nc-4.0, ..., other; the list at
    https://huggingface.co/docs/hub/repositories-licenses, which is not checked here), `other` without a
    `licence_name` (an id of the same form naming it) and a `licence_link` (where its text is: an https address, or
    `LICENCE_FILE` of `model_dir`, the publisher's own, sent with the model), and either for any other licence."""
    if licence is None:
        for option, value in (("--license_name", licence_name), ("--license_link", licence_link)):
            if value is not None:
                raise InvalidInputError(f"{option} goes with --license other: give both")
        return
    for option, value in (("--license", licence), ("--license_name", licence_name)):
        if value is not None and not LICENCE_ID.fullmatch(value):
            raise InvalidInputError(f"{option} must be a licence id as the Hub spells them, in lower case (e.g. "
                                    f"apache-2.0, cc-by-nc-4.0; see https://huggingface.co/docs/hub/"
                                    f"repositories-licenses), got {value!r}")
    if licence != "other":
        for option, value in (("--license_name", licence_name), ("--license_link", licence_link)):
            if value is not None:
                raise InvalidInputError(f"{option} names the licence of --license other, not of {licence}")
        return
    if licence_name is None:
        raise InvalidInputError("--license other needs --license_name, an id naming the licence (e.g. "
                                "acme-research-only)")
    where = (f"an https:// address or {LICENCE_FILE}, a file of the model folder holding the licence's text, sent "
             "with the model")
    if licence_link is None:
        raise InvalidInputError(f"--license other needs --license_link, where its text is: {where}")
    if licence_link == LICENCE_FILE:
        if model_dir is not None:
            _check_publishers_licence_file(model_dir / LICENCE_FILE)
    elif not re.fullmatch(r"https://[^\s/]+\.[^\s/]+(/\S*)?", licence_link):
        raise InvalidInputError(f"--license_link must be {where}, got {licence_link!r}")


def _check_publishers_licence_file(path: Path) -> None:
    """Refuse `--license_link LICENSE.md` where the model folder has no such file, or only the one its card wrote
    (the training data's terms)."""
    if not path.is_file():
        raise MissingInputError(f"--license_link {LICENCE_FILE}: the model folder has no {LICENCE_FILE}; put the "
                                "licence's text there, or give its https:// address")
    if path.read_text(encoding="utf-8", errors="replace").startswith(LICENCE_FILE_HEADER):
        raise InvalidInputError(f"--license_link {LICENCE_FILE}: the model folder's {LICENCE_FILE} is the one its card "
                                "wrote, the training data's terms, not the licence stated: replace it with the "
                                "licence's text, or give its https:// address")


def update_card_from_run(model_dir: Path, licence: str | None = None, licence_name: str | None = None,
                         licence_link: str | None = None) -> None:
    """Rewrite the export's card from its run.json when `train.evaluate` has written results into the folder
    (`eval-<split>/metrics.json`, see `model_card.evaluations`), so that the card pushed shows them (the card written
    at export came before them), or when the publisher states a `licence` (`--license`; `licence_name` and
    `licence_link` for `other`),
    which the card then carries as a `license` field of run.json would: its Licence section still names the
    training data's terms (`weights_licence`). Without run.json the card is kept as it is, with a warning, and a
    licence is refused; a run.json that cannot be read is refused, naming it."""
    found = [evaluation["folder"] for evaluation in evaluations(model_dir)]
    if not found and not licence:
        return
    purposes = []
    if found:
        purposes.append(f"show the train.evaluate results in {', '.join(found)}")
    if licence:
        purposes.append(f"state the licence {licence}" + (f" ({licence_name})" if licence_name else ""))
    purpose = " and ".join(purposes)
    run_file = model_dir / "run.json"
    if not run_file.is_file() and licence:
        raise MissingInputError(f"{model_dir.name} has no run.json to write its card from, to {purpose}: export the "
                                "model again, or publish it without --license")
    if not run_file.is_file():
        logger.warning("%s holds train.evaluate results (%s) but no run.json to write its card from: the card pushed "
                       "does not show them", model_dir.name, ", ".join(found))
        return
    try:
        run = json.loads(run_file.read_text(encoding="utf-8"))
        if not isinstance(run, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        remedy = "" if licence else ", or move those folders out of the export to publish its card as it is"
        raise InvalidInputError(f"{model_dir.name}/run.json cannot be read ({error}): the card cannot be written to "
                                f"{purpose}; restore it{remedy}") from error
    stated = {"license": licence, "license_name": licence_name, "license_link": licence_link}
    write_model_card(model_dir, {**run, **stated} if licence else run)
    logger.info("The card is written again from run.json, to %s", purpose)


def set_base_model(model_dir: Path, base_model: str) -> None:
    """Make the card name `base_model` (a Hub repo id) as the model it was fine-tuned from: its metadata's
    `base_model`, the training table's row and the limitations' note. The run recorded the repo its --init run was
    meant for, or a local folder; the encoder may have been published elsewhere since."""
    card = model_dir / "README.md"
    text = card.read_text(encoding="utf-8")
    _, header, body = text.split("---\n", 2) if text.startswith("---\n") else ("", "", text)
    named = re.search(r"^base_model: *(\S+) *$", header, flags=re.MULTILINE)
    if named:
        header = header.replace(named.group(0), f"base_model: {base_model}")
        body = body.replace(named.group(1), base_model)
    else:
        header = f"base_model: {base_model}\n{header}"
    body = re.sub(r"^\| Base model \| .* \|$", f"| Base model | {base_model} |", body, count=1, flags=re.MULTILINE)
    body = re.sub(r"The base model \(`[^`\n]*`\)", f"The base model (`{base_model}`)", body)
    card.write_text(f"---\n{header}---\n{body}", encoding="utf-8")
    logger.info("The card now names %s as the base model%s", base_model,
                f" (it named {named.group(1)})" if named else "")


def _resolve_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise InputError("No Hugging Face token: set HF_TOKEN (a write token) or run `hf auth login`")
    return token


def _check_repo_id(repo_id: str) -> None:
    if is_local_path(repo_id) or repo_id.count("/") != 1:
        raise InvalidInputError(f"repo_id must look like 'user/name', got {repo_id!r}")


def _push(folder: Path, repo_id: str, repo_type: str, *, private: bool, revision: str | None, commit_message: str,
          token: str | None, replaced, allow_patterns=None, ignore_patterns=None) -> CommitInfo:
    _check_repo_id(repo_id)
    api = HfApi(token=_resolve_token(token))
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    # create_repo keeps an existing repo's visibility: public=True asks for a public one, so it is made public
    # (once the commit is in); a private push into a public repo is public too, which the user is told
    was_private = api.repo_info(repo_id, repo_type=repo_type).private
    if private and not was_private:
        logger.warning("%s is public: this push is public too (private applies to a repo it creates; change an "
                       "existing repo's visibility in its settings)", repo_id)
    if revision:
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, repo_type=repo_type, folder_path=folder, revision=revision, commit_message=commit_message,
        allow_patterns=allow_patterns, ignore_patterns=ignore_patterns, delete_patterns=list(replaced),
    )
    if not private and was_private:
        api.update_repo_settings(repo_id, repo_type=repo_type, private=False)
        logger.warning("%s was private: it is public now, as --public asks", repo_id)
    return commit


def push_model(model_dir, repo_id: str, *, private: bool = True, revision: str | None = None,
               commit_message: str = "Upload cxrgm model", token: str | None = None,
               base_model: str | None = None, licence: str | None = None,
               licence_name: str | None = None, licence_link: str | None = None) -> CommitInfo:
    """Upload an export folder (weights, config, Hub code files, processor, README card, metrics) in one commit.

    The repo is created private unless `private=False`; `revision` names a branch (created when missing);
    `base_model` (a repo id) is the model the card says it was fine-tuned from; `licence` (a Hub licence id; `other`
    with a `licence_name` and a `licence_link`, see `check_licence`) is the one the card states for the weights. An export holding
    `train.evaluate` results (`eval-<split>/`), or published with a `licence`, has its card written again from its
    run.json first (`update_card_from_run`). Files outside that list (optimizer states, logs, run records, evaluation
    folders) stay local.
    """
    model_dir = Path(model_dir)
    names = model_files(model_dir)
    check_no_local_paths(model_dir, names, _label_names(model_dir))
    _check_repo_id(repo_id)
    if base_model is not None and (is_local_path(base_model) or base_model.count("/") != 1):
        raise InvalidInputError(f"--base_model must be the Hub repo id of the model it was fine-tuned from "
                                f"('user/name'), got {base_model!r}")
    check_licence(licence, licence_name, licence_link, model_dir)
    token = _resolve_token(token)  # before the card changes: a push refused here leaves the export as it was
    card, licence_file = model_dir / "README.md", model_dir / LICENCE_FILE
    original = card.read_text(encoding="utf-8")
    original_licence = licence_file.read_text(encoding="utf-8") if licence_file.is_file() else None
    skipped = sorted(p.name for p in model_dir.iterdir() if p.name not in names)
    if skipped:
        logger.info("Not uploading %s", skipped)
    try:
        update_card_from_run(model_dir, licence, licence_name, licence_link)
        if base_model:
            set_base_model(model_dir, base_model)
        point_card_at(model_dir, repo_id, revision)
        names = model_files(model_dir)  # a card written again may have added or removed its licence file
        return _push(model_dir, repo_id, "model", private=private, revision=revision, commit_message=commit_message,
                     token=token, replaced=MODEL_REPLACED, allow_patterns=names)
    except BaseException:
        if card.read_text(encoding="utf-8") != original:  # the repo did not get this card: the export keeps its own
            card.write_text(original, encoding="utf-8")
        if original_licence is None:
            licence_file.unlink(missing_ok=True)
        elif not licence_file.is_file() or licence_file.read_text(encoding="utf-8") != original_licence:
            licence_file.write_text(original_licence, encoding="utf-8")
        raise


def push_dataset(dataset_dir, repo_id: str, *, private: bool = True, revision: str | None = None,
                 commit_message: str = "Upload prepared chest X-ray data", token: str | None = None,
                 identifiers_checked: bool = False) -> CommitInfo:
    """Upload a prepared data set folder with its dataset card (README.md, see `write_dataset_card`).

    A set built from a site's own files (`holds_site_identifiers`: imagefolder, manifest, dicomdir, cxr_folder,
    cxr_pool, or not recorded) carries the identifiers and file paths those files give, which may be patient data
    (a folder named by medical record number): it is refused unless `identifiers_checked`, the publisher's word
    that they hold none."""
    dataset_dir = Path(dataset_dir)
    _check_folder(dataset_dir, "data set")
    if (dataset_dir / "config.json").is_file() and any(dataset_dir.glob("*.safetensors")):
        raise InvalidInputError(f"{dataset_dir.name!r} is a model export, not a data set: publish it with --model_dir")
    if not (dataset_dir / "README.md").is_file():
        raise MissingInputError(f"{dataset_dir.name!r} has no README.md: write its card with write_dataset_card first")
    if not identifiers_checked and holds_site_identifiers(dataset_dir):
        builder = prepared_with(dataset_dir)
        made = (f"was prepared with {builder}, from a site's own files" if builder else
                "does not record how it was built (no prepare_settings.json), so it may hold a site's own files")
        raise InvalidInputError(
            f"{dataset_dir.name!r} {made}: its patient_id, study_id and path columns hold the identifiers and names "
            "those files give (folder and file names such as record numbers, the ids a table gives; DICOM "
            "identifiers are hashed, and can be reversed for short ids unless CXRGM_HASH_SALT was set when it was "
            "built). Check that they hold no patient data, then publish with --identifiers_checked")
    names = [str(p.relative_to(dataset_dir)) for p in dataset_dir.rglob("*") if p.is_file()]
    check_no_local_paths(dataset_dir, names, saved_splits_and_labels(dataset_dir)[1])
    return _push(dataset_dir, repo_id, "dataset", private=private, revision=revision, commit_message=commit_message,
                 token=token, replaced=DATASET_REPLACED, ignore_patterns=list(DATASET_SKIPPED))
