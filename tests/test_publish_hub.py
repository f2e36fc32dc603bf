"""`python -m train.publish` against a mocked Hub: exactly the expected files are committed, the card parses back.

The push runs the script's `__main__` code in the test's process, with the environment and the settings
huggingface_hub read from it at import (its endpoint, token file, offline mode, Xet) patched for the call, and an
httpx mock transport answering repo creation, branch creation, preupload, the LFS batch/upload and commit endpoints;
one push runs in a fresh interpreter with that environment set before huggingface_hub is imported, as a user runs it.
Xet is disabled, so weights go through the (mocked) LFS path and small files inline. The mock repo can start with
files of an earlier push (its tree listing), to see which of them a new push deletes.
"""

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENDPOINT = "http://hub.test"
HUB_CODE = {"configuration_gmvit.py", "modeling_gmvit.py", "masking.py", "image_processing_gmvit.py"}


class MockHub:
    """Just enough of the Hub's HTTP API for create_repo, create_branch and upload_folder; records what arrives."""

    def __init__(self, remote_files=(), refuse_commits=False, visibility=None):
        self.requests, self.repos, self.branches, self.commits, self.lfs = [], [], [], [], {}
        self.remote_files = list(remote_files)
        self.refuse_commits = refuse_commits
        self.visibility = visibility  # an existing repo's ("private" / "public"); None: the repo push creates
        self.settings = []

    def __call__(self, request):
        import httpx2

        path, method = request.url.path, request.method
        self.requests.append({"method": method, "path": path, "auth": request.headers.get("authorization", "")})
        if path == "/api/repos/create":
            payload = json.loads(request.content)
            self.repos.append(payload)
            self.visibility = self.visibility or payload["visibility"]
            return httpx2.Response(200, json={"url": f"{ENDPOINT}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.endswith("/settings") and method == "PUT":
            self.settings.append(json.loads(request.content))
            self.visibility = self.settings[-1].get("visibility", self.visibility)
            return httpx2.Response(200, json={})
        if method == "GET" and path.count("/") == 4 and path.startswith(("/api/models/", "/api/datasets/")):
            return httpx2.Response(200, json={"id": path.split("/", 3)[3], "private": self.visibility == "private",
                                              "sha": "0" * 40})
        if "/tree/" in path:
            return httpx2.Response(200, json=[{"type": "file", "path": name, "size": 1, "oid": "0" * 40}
                                              for name in self.remote_files])
        if "/branch/" in path:
            self.branches.append(path.rsplit("/branch/", 1)[1])
            return httpx2.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                      "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if path.endswith(".git/info/lfs/objects/batch"):
            objects = [{"oid": o["oid"], "size": o["size"],
                        "actions": {"upload": {"href": f"{ENDPOINT}/lfs-upload/{o['oid']}"}}}
                       for o in json.loads(request.content)["objects"]]
            return httpx2.Response(200, json={"transfer": "basic", "objects": objects})
        if path.startswith("/lfs-upload/") and method == "PUT":
            self.lfs[path.rsplit("/", 1)[1]] = hashlib.sha256(request.read()).hexdigest()
            return httpx2.Response(200)
        if "/commit/" in path:
            return self._commit(request)
        return httpx2.Response(404, json={"error": f"unexpected {method} {path}"})

    def _commit(self, request):
        import httpx2

        if self.refuse_commits:
            return httpx2.Response(403, json={"error": "You don't have the rights to create a commit"})
        commit = {"path": request.url.path, "files": {}, "deleted": []}
        for line in request.content.decode().splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                commit["summary"] = value["summary"]
            elif item["key"] == "file":
                commit["files"][value["path"]] = {"kind": "regular", "text": base64.b64decode(value["content"]).decode(
                    "utf-8", errors="replace")}
            elif item["key"] == "deletedFile":
                commit["deleted"].append(value["path"])
            elif item["key"] == "lfsFile":
                commit["files"][value["path"]] = {"kind": "lfs", "uploaded": self.lfs.get(value["oid"]) == value["oid"]}
        self.commits.append(commit)
        repo = request.url.path.split("/commit/")[0].split("/", 3)[3]
        return httpx2.Response(200, json={"commitUrl": f"{ENDPOINT}/{repo}/commit/{'a' * 40}",
                                          "commitOid": "a" * 40, "success": True})

    def record(self) -> dict:
        return {"requests": self.requests, "repos": self.repos, "branches": self.branches, "commits": self.commits,
                "settings": self.settings, "visibility": self.visibility}


def client_factory(hub: MockHub):
    """An httpx client factory for huggingface_hub (`set_client_factory`) whose clients send every request to `hub`."""
    import httpx2

    return lambda: httpx2.Client(transport=httpx2.MockTransport(hub))


def install(record_path: str, remote_files=(), refuse_commits=False, visibility=None):
    """In the child: route huggingface_hub through a MockHub (its repo holding `remote_files`, of `visibility` if it
    exists; refusing every commit if told) and dump its record at exit."""
    import atexit

    from huggingface_hub.utils import set_client_factory

    hub = MockHub(remote_files, refuse_commits, visibility)
    set_client_factory(client_factory(hub))
    atexit.register(lambda: Path(record_path).write_text(json.dumps(hub.record())))


def push(argv: list[str], tmp_path: Path, token: str = "hf_test_token", remote_files=(), refuse_commits=False,
         visibility=None, new_process=False) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m train.publish ARGV` wired to the mock Hub (repo holding `remote_files`, an existing one of
    `visibility`; refusing every commit if told): in this process (runpy runs the module's `__main__` code, as a new
    process would, without its seconds of imports), or in a fresh interpreter where `new_process`. Its exit status,
    what it printed (an exception the script lets through: its traceback, status 1) and the mock Hub's record."""
    environment = {"HF_ENDPOINT": ENDPOINT, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "HF_TOKEN": token,
                   "HF_HOME": str(tmp_path / "hf_home")}
    if new_process:
        return push_in_new_process(argv, tmp_path, environment, remote_files, refuse_commits, visibility)
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent, set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    hub = MockHub(remote_files, refuse_commits, visibility)
    # what huggingface_hub read from the environment when it was imported, as it reads `environment`: the endpoint,
    # Xet, offline mode, and the paths under HF_HOME (its token file, caches, the agent registry it fetches)
    home = constants.HF_HOME
    settings = {name: environment["HF_HOME"] + value[len(home):] for name, value in vars(constants).items()
                if isinstance(value, str) and (value == home or value.startswith(home + os.sep))}
    settings.update(ENDPOINT=ENDPOINT, HF_HUB_DISABLE_XET=True, HF_HUB_OFFLINE=False)
    stdout, stderr, status = io.StringIO(), io.StringIO(), 0
    # main's logging.basicConfig does nothing where the root logger has handlers (pytest's): this one prints the
    # script's log as basicConfig would
    printed = logging.StreamHandler(stderr)
    printed.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    with contextlib.ExitStack() as restore:
        restore.enter_context(mock.patch.dict(os.environ, environment))
        for name, value in settings.items():
            restore.enter_context(mock.patch.object(constants, name, value))
        # the agent registry huggingface_hub fetches once a process: fetched from the mock Hub, for this push only
        restore.enter_context(mock.patch.object(_detect_agent, "_registry", None))
        set_client_factory(client_factory(hub))
        restore.callback(set_client_factory, default_client_factory)
        restore.callback(root.setLevel, root.level)
        root.setLevel(logging.INFO)
        root.addHandler(printed)
        restore.callback(root.removeHandler, printed)
        restore.enter_context(mock.patch.object(sys, "argv", ["train.publish", *argv]))
        restore.enter_context(contextlib.chdir(ROOT))
        restore.enter_context(contextlib.redirect_stdout(stdout))
        restore.enter_context(contextlib.redirect_stderr(stderr))
        try:
            runpy.run_module("train.publish", run_name="__main__", alter_sys=True)
        except SystemExit as end:
            status = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
        except Exception:
            traceback.print_exc()
            status = 1
    result = subprocess.CompletedProcess(["python", "-m", "train.publish", *argv], status, stdout.getvalue(),
                                         stderr.getvalue())
    return result, hub.record()


def push_in_new_process(argv: list[str], tmp_path: Path, environment: dict, remote_files, refuse_commits,
                        visibility) -> tuple[subprocess.CompletedProcess, dict]:
    """`push` in a fresh interpreter, with `environment` set before huggingface_hub is imported."""
    record = tmp_path / "hub_record.json"
    code = f"""
        import runpy, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_publish_hub
        test_publish_hub.install({str(record)!r}, {list(remote_files)!r}, {refuse_commits!r}, {visibility!r})
        sys.argv = ["train.publish", *{argv!r}]
        runpy.run_module("train.publish", run_name="__main__", alter_sys=True)
    """
    env = {**os.environ, **environment, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    return result, json.loads(record.read_text()) if record.is_file() else {}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny classifier export with card, processor, metrics and files that must stay local."""
    from model_cards import write_model_card
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor

    folder = tmp_path_factory.mktemp("export")
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2,
                                  id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1})
    GroupMaskedViTForImageClassification(config).save_pretrained(folder)
    GroupMaskedViTImageProcessor(size=32, num_channels=1).save_pretrained(folder)
    metrics = {"accuracy": 0.8125, "auroc_macro": 0.9, "sensitivity_pneumonia": 0.75}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "optimizer.pt").write_bytes(b"local only")
    run = {"task": "classification", "metrics": metrics, "repo_id": "alice/cxrgm-tiny",
           "eval_dataset": {"name": "kermany_pediatric", "split": "test", "num_images": 16}}
    (folder / "run.json").write_text(json.dumps({**run, "output_dir": str(folder)}))
    write_model_card(folder, run)
    return folder


def test_push_commits_exactly_the_export_files_and_the_card_parses_back(export, tmp_path):
    from huggingface_hub import ModelCard

    folder = tmp_path / "export"  # the push points the card at its branch: the other tests' export stays as it was
    shutil.copytree(export, folder)
    assert (folder / "LICENSE.md").is_file()  # the export's card: the training data's terms, linked
    # train.evaluate's results in the export (its default output): shown on the card pushed, not uploaded themselves
    (folder / "eval-test").mkdir()
    (folder / "eval-test" / "metrics.json").write_text(json.dumps(
        {"accuracy": 0.7, "accuracy_ci_low": 0.6, "accuracy_ci_high": 0.8, "num_samples": 10.0}))
    (folder / "eval-test" / "drift.json").write_text(json.dumps({"num_images": {"kermany": 10}}))
    result, record = push(["--model_dir", str(folder), "--repo_id", "alice/cxrgm-tiny", "--revision", "v1",
                           "--commit_message", "tiny classifier", "--license", "cc-by-nc-4.0"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"{ENDPOINT}/alice/cxrgm-tiny/commit/{'a' * 40}")
    assert record["repos"] == [{"name": "cxrgm-tiny", "organization": "alice", "visibility": "private",
                               "type": "model"}]
    assert record["branches"] == ["v1"]
    api_calls = [r for r in record["requests"] if "alice/" in r["path"] or r["path"] == "/api/repos/create"]
    assert api_calls and all(r["auth"] == "Bearer hf_test_token" for r in api_calls)
    assert "hf_test_token" not in result.stdout + result.stderr

    (commit,) = record["commits"]
    assert commit["path"] == "/api/models/alice/cxrgm-tiny/commit/v1" and commit["summary"] == "tiny classifier"
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "metrics.json", "README.md", *HUB_CODE}
    assert set(commit["files"]) == expected
    assert commit["files"]["model.safetensors"] == {"kind": "lfs", "uploaded": True}

    card = ModelCard(commit["files"]["README.md"]["text"])
    results = {(r.dataset_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results == {("kermany_pediatric", "Accuracy"): 0.8125, ("kermany_pediatric", "AUROC (macro)"): 0.9,
                       ("kermany_pediatric", "Sensitivity (pneumonia)"): 0.75, ("kermany", "Accuracy"): 0.7}
    assert {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"
    assert card.data.license == "cc-by-nc-4.0" and card.data.license_name is None  # --license; the data's terms stay
    assert card.data.license_link is None and not (folder / "LICENSE.md").exists()  # nor sent: not in `expected`
    assert "Model weights and code: cc-by-nc-4.0, as stated by the publisher." in card.text
    assert "not all permissive: the training data (not recorded)." in card.text
    assert "Not for clinical use" in card.text and "| Accuracy | 0.7000 | 0.6000 to 0.8000 |" in card.text
    assert (folder / "README.md").read_text() == commit["files"]["README.md"]["text"]
    for entry in commit["files"].values():
        assert str(tmp_path.parent) not in entry.get("text", "")


def test_the_card_pushed_names_the_repo_it_is_pushed_to(export, tmp_path):
    """The export's card names alice/cxrgm-tiny (its run's --hub_model_id); pushed to bob/pneumonia, its examples
    load bob/pneumonia, its title and model-index name are pneumonia, and nothing else in the card changes."""
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    before = (folder / "README.md").read_text()
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = record["commits"][0]["files"]["README.md"]["text"]
    assert 'model="bob/pneumonia"' in sent and "cxrgm-tiny" not in sent
    assert sent == (before.replace('"alice/cxrgm-tiny"', '"bob/pneumonia"').replace("\n# cxrgm-tiny\n", "\n# pneumonia\n")
                    .replace("\n- name: cxrgm-tiny\n", "\n- name: pneumonia\n"))
    assert (folder / "README.md").read_text() == sent  # the export's card is the one the repo has
    # its weights follow training data not all permissive: the card's license_link names the file sent beside it
    assert "license_link: LICENSE.md" in sent
    assert record["commits"][0]["files"]["LICENSE.md"]["text"] == (folder / "LICENSE.md").read_text()


def test_a_licence_of_the_publishers_own_is_linked_and_sent_with_the_model(export, tmp_path):
    """--license other --license_link LICENSE.md: the card links the publisher's text, which is sent unchanged (the
    training data's terms the export's card wrote there are refused as that text)."""
    from huggingface_hub import ModelCard

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    stated = ["--license", "other", "--license_name", "acme-research-only", "--license_link", "LICENSE.md"]
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia", *stated], tmp_path)
    assert result.returncode != 0 and "is the one its card wrote, the training data's terms" in result.stderr
    assert record["commits"] == []
    (folder / "LICENSE.md").write_text("# Acme research-only licence\n\nResearch use only.\n")
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia", *stated], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = record["commits"]
    card = ModelCard(commit["files"]["README.md"]["text"])
    assert (card.data.license, card.data.license_name, card.data.license_link) == (
        "other", "acme-research-only", "LICENSE.md")
    assert commit["files"]["LICENSE.md"]["text"] == "# Acme research-only licence\n\nResearch use only.\n"
    assert "as stated by the publisher. Its terms: [LICENSE.md](LICENSE.md)." in card.text


def test_a_card_pushed_to_a_branch_loads_that_branch(export, tmp_path):
    """Pushed with --revision v1 (a new repo's main stays empty), the card's examples loaded main, which holds no
    model; pushed to main again, the examples load main."""
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia", "--revision", "v1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = record["commits"][0]["files"]["README.md"]["text"]
    loads = re.findall(r'"bob/pneumonia"[^)\n]*', sent)
    assert loads and all(load == '"bob/pneumonia", revision="v1", trust_remote_code=True' for load in loads), loads
    (tmp_path / "main").mkdir()
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia"], tmp_path / "main")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "revision=" not in record["commits"][0]["files"]["README.md"]["text"]


def test_a_push_the_hub_refuses_leaves_the_local_card_as_it_was(export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    before, licence = (folder / "README.md").read_text(), (folder / "LICENSE.md").read_text()
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia"], tmp_path, refuse_commits=True)
    assert result.returncode != 0 and "403" in result.stderr and record["commits"] == []
    assert (folder / "README.md").read_text() == before
    # a licence stated on publishing rewrites the card and drops the licence file: refused, both come back
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia", "--license", "mit"], tmp_path,
                          refuse_commits=True)
    assert result.returncode != 0 and record["commits"] == []
    assert (folder / "README.md").read_text() == before and (folder / "LICENSE.md").read_text() == licence


def test_an_export_whose_card_cannot_be_written_again_keeps_it_or_is_refused(export, tmp_path, caplog):
    """The card shows train.evaluate's results by being written again from the export's run.json: without one the
    card is kept, with a warning; one that cannot be read is refused, naming it."""
    from hf_datasets.errors import InvalidInputError
    from model_cards.publish import update_card_from_run

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    before = (folder / "README.md").read_text()
    update_card_from_run(folder)  # no results: the card stays
    assert (folder / "README.md").read_text() == before
    (folder / "eval-test").mkdir()
    (folder / "eval-test" / "metrics.json").write_text(json.dumps({"accuracy": 0.7}))
    (folder / "run.json").write_text("{")
    with pytest.raises(InvalidInputError, match=r"export/run.json cannot be read .*results in eval-test"):
        update_card_from_run(folder)
    (folder / "run.json").unlink()
    update_card_from_run(folder)
    assert "holds train.evaluate results (eval-test) but no run.json" in caplog.text
    assert (folder / "README.md").read_text() == before


def test_public_push_to_main(export, tmp_path):
    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny", "--public"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["repos"][0]["visibility"] == "public" and record["branches"] == []
    assert record["commits"][0]["path"] == "/api/models/alice/cxrgm-tiny/commit/main"


def test_prepared_dataset_push_carries_its_dataset_card(tmp_path):
    from datasets import Dataset, DatasetDict

    from model_cards import write_dataset_card

    folder = tmp_path / "prepared"
    rows = {"patient_id": ["a", "b"], "label": [0, 1]}
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)}).save_to_disk(folder)
    write_dataset_card(folder, ["kermany", "nih_cxr14"])
    result, record = push(["--dataset_dir", str(folder), "--repo_id", "alice/cxr-prepared", "--identifiers_checked"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["repos"] == [{"name": "cxr-prepared", "organization": "alice", "visibility": "private",
                                "type": "dataset"}]
    (commit,) = record["commits"]
    assert commit["path"] == "/api/datasets/alice/cxr-prepared/commit/main"
    assert "README.md" in commit["files"] and "dataset_dict.json" in commit["files"]
    card = commit["files"]["README.md"]["text"]
    assert "CC BY 4.0" in card and "NIH ChestX-ray14" in card and "Not for clinical use" in card


def test_a_set_of_a_sites_own_files_is_published_only_once_its_identifiers_are_checked(tmp_path):
    """A set built from a site's own folders keeps the identifiers its files give (here a folder per medical record
    number): it was pushed like a public set, under a card calling its identifiers "already de-identified"."""
    from hf_datasets.builders.sample import KERMANY_SHA256, sample_files
    from hf_datasets.errors import InvalidInputError
    from hf_datasets.prepare import prepare
    from model_cards import write_dataset_card
    from model_cards.publish import push_dataset

    files = sample_files()
    for number, name in enumerate(KERMANY_SHA256):
        label = "pneumonia" if "bacteria" in name else "normal"
        target = tmp_path / "site" / label / f"MRN{1000 + number // 2}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[name].read_bytes())
    prepare("imagefolder", tmp_path / "site", tmp_path / "own", size=16, progress=False,
            patient_pattern="^([^/]+)/")
    prepare("sample", None, tmp_path / "public", size=16, progress=False)
    for folder in ("own", "public"):
        write_dataset_card(tmp_path / folder, ["kermany"])
    with pytest.raises(InvalidInputError, match=r"'own' was prepared with imagefolder, from a site's own files: its "
                                                r"patient_id, study_id and path columns hold the identifiers and names "
                                                r"those files give .* publish with --identifiers_checked"):
        push_dataset(tmp_path / "own", "alice/own", token="hf_test_token")  # refused before any request
    result, record = push(["--dataset_dir", str(tmp_path / "own"), "--repo_id", "alice/own", "--identifiers_checked"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    card = " ".join(record["commits"][0]["files"]["README.md"]["text"].split())
    assert "those the site's own files give" in card and "already de-identified" not in card
    result, record = push(["--dataset_dir", str(tmp_path / "public"), "--repo_id", "alice/public"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    card = " ".join(record["commits"][0]["files"]["README.md"]["text"].split())
    assert "already de-identified" in card and "site's own files" not in card


def test_refuses_incomplete_or_leaky_folders_before_any_request(export, tmp_path):
    import shutil

    from model_cards.publish import check_no_local_paths, model_files

    partial = tmp_path / "partial"
    shutil.copytree(export, partial)
    (partial / "README.md").unlink()
    (partial / "masking.py").unlink()
    with pytest.raises(FileNotFoundError, match="README.md.*masking.py|masking.py.*README.md"):
        model_files(partial)
    (export / "notes.md").write_text("trained from /home/alice/data/kermany")
    with pytest.raises(ValueError, match="local paths"):
        check_no_local_paths(export, ["notes.md"])
    (export / "notes.md").unlink()

    result, record = push(["--model_dir", str(partial), "--repo_id", "alice/cxrgm-tiny"], tmp_path)
    assert result.returncode != 0 and "lacks" in result.stderr
    assert record.get("requests") == []


def test_missing_token_is_a_clear_error(export, tmp_path):
    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny"], tmp_path, token="")
    assert result.returncode != 0 and "HF_TOKEN" in result.stderr
    assert record.get("requests") == []


def test_republishing_deletes_the_weights_and_shards_the_new_folder_no_longer_has(export, tmp_path):
    """An update of a repo leaves no stale weights (a sharded earlier push) or data shards behind, where loading
    would find them beside the new ones; files added on the Hub by hand are kept."""
    from datasets import Dataset, DatasetDict

    from model_cards import write_dataset_card

    earlier = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
               "model.safetensors", "README.md", ".gitattributes", "example.png"]
    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny"], tmp_path,
                          remote_files=earlier)
    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = record["commits"]
    assert sorted(commit["deleted"]) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                         "model.safetensors.index.json"]
    assert "model.safetensors" in commit["files"]

    folder = tmp_path / "prepared"
    DatasetDict({"train": Dataset.from_dict({"label": [0, 1]})}).save_to_disk(folder)
    write_dataset_card(folder, ["kermany"])
    earlier = ["train/data-00000-of-00001.arrow", "train/data-00001-of-00002.arrow", "test/data-00000.arrow",
               "test/state.json", "dataset_dict.json", "README.md", ".gitattributes"]
    result, record = push(["--dataset_dir", str(folder), "--repo_id", "alice/cxr-prepared", "--identifiers_checked"],
                          tmp_path, remote_files=earlier)
    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = record["commits"]
    assert sorted(commit["deleted"]) == ["test/data-00000.arrow", "test/state.json", "train/data-00001-of-00002.arrow"]
    assert "train/data-00000-of-00001.arrow" in commit["files"]


def test_a_push_refused_for_its_token_or_repo_id_leaves_the_local_card_as_it_was(export, tmp_path):
    """The card's examples were pointed at the repo before the token was looked for: a push that failed for want of
    a token (or sent nothing at all) had already rewritten the export's README to name a repo that never got it."""
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    before = (folder / "README.md").read_text()
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia"], tmp_path, token="")
    assert result.returncode != 0 and "HF_TOKEN" in result.stderr and record.get("requests") == []
    assert (folder / "README.md").read_text() == before
    result, _ = push(["--model_dir", str(folder), "--repo_id", "bob"], tmp_path)
    assert result.returncode != 0 and "user/name" in result.stderr
    assert (folder / "README.md").read_text() == before


def test_a_wrong_folder_is_named_with_what_is_wrong_with_it(export, tmp_path):
    """A mistyped --model_dir said only "No model folder 'model'" (every export is named model), a file said the
    same, and a run's output folder (which holds the export in model/) listed every missing file without saying
    where the export is."""
    from model_cards.publish import model_files, push_dataset

    missing = tmp_path / "run_a" / "model"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*does not exist"):
        model_files(missing)
    with pytest.raises(FileNotFoundError, match="README.md.*is a file, not a folder"):
        model_files(export / "README.md")
    run_dir = tmp_path / "run_b"
    shutil.copytree(export, run_dir / "model")
    with pytest.raises(FileNotFoundError, match=f"lacks .*pass {run_dir / 'model'}"):
        model_files(run_dir)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'prepared'}.*does not exist"):
        push_dataset(tmp_path / "prepared", "alice/cxr-prepared", token="hf_test_token")
    with pytest.raises(ValueError, match="model export.*--model_dir"):
        push_dataset(export, "alice/cxr-prepared", token="hf_test_token")


def test_a_prepared_set_that_was_mapped_is_pushed_without_the_cache_files_in_its_split_folders(tmp_path):
    """`datasets` writes a mapped split's cache (cache-*.arrow) and its temporary files beside the split's shards;
    those were left out of the upload only at the folder's top level, so a set that had been mapped sent them."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from model_cards import write_dataset_card

    folder = tmp_path / "prepared"
    DatasetDict({"train": Dataset.from_dict({"label": [0, 1]})}).save_to_disk(folder)
    load_from_disk(str(folder))["train"].map(lambda row: {"label": 1 - row["label"]})
    (folder / "train" / "tmp1a2b3c").write_bytes(b"a killed map's file")
    assert list((folder / "train").glob("cache-*.arrow"))
    write_dataset_card(folder, ["kermany"])
    result, record = push(["--dataset_dir", str(folder), "--repo_id", "alice/cxr-prepared", "--identifiers_checked"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = record["commits"]
    assert sorted(commit["files"]) == ["README.md", "dataset_dict.json", "train/data-00000-of-00001.arrow",
                                       "train/dataset_info.json", "train/state.json"]


def test_public_makes_a_private_repo_public_and_a_private_push_to_a_public_repo_says_it_stays_public(export, tmp_path):
    """README pushes a model private, then the same repo with --public: the repo already existed, so create_repo kept
    it private and the "public" release was visible to no one, without a word."""
    # a fresh process: the warning reaches the terminal through the script's own logging set-up
    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny", "--public"], tmp_path,
                          visibility="private", new_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["visibility"] == "public" and record["settings"] == [{"visibility": "public"}]
    assert "alice/cxrgm-tiny was private: it is public now" in result.stderr
    assert len(record["commits"]) == 1

    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny"], tmp_path,
                          visibility="public")
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["visibility"] == "public" and record["settings"] == []
    assert "alice/cxrgm-tiny is public" in result.stderr

    result, record = push(["--model_dir", str(export), "--repo_id", "alice/cxrgm-tiny", "--public"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert record["visibility"] == "public" and record["settings"] == [] and "private" not in result.stderr


def test_base_model_names_the_repo_the_encoder_was_published_to(export, tmp_path):
    """A fine-tuned export's card names as base model the repo its --init run meant to publish to (the demo's
    cxrgm/demo-gmml) or a local folder; the encoder published elsewhere, nothing could make the card name that repo."""
    from huggingface_hub import ModelCard

    from model_cards import write_model_card

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    run = {"task": "classification", "repo_id": "alice/cxrgm-tiny", "base_model": "cxrgm/demo-gmml",
           "training": {"init": "gmml"}, "train_datasets": [{"name": "kermany", "num_images": 12}]}
    write_model_card(folder, run)
    result, record = push(["--model_dir", str(folder), "--repo_id", "bob/pneumonia", "--base_model", "bob/gmml"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = record["commits"][0]["files"]["README.md"]["text"]
    assert ModelCard(sent).data.base_model == "bob/gmml"
    assert "| Base model | bob/gmml |" in sent and "demo-gmml" not in sent
    assert (folder / "README.md").read_text() == sent

    local = tmp_path / "local"  # fine-tuned from a local folder: no base model in the card's metadata
    shutil.copytree(export, local)
    write_model_card(local, {**run, "base_model": "/home/alice/runs/pre/model"})
    assert ModelCard.load(local / "README.md").data.base_model is None
    result, record = push(["--model_dir", str(local), "--repo_id", "bob/pneumonia", "--base_model", "bob/gmml"],
                          tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sent = record["commits"][0]["files"]["README.md"]["text"]
    assert ModelCard(sent).data.base_model == "bob/gmml" and "| Base model | bob/gmml |" in sent
    assert "local checkpoint" not in sent

    result, record = push(["--model_dir", str(local), "--repo_id", "bob/pneumonia", "--base_model", "../pre/model"],
                          tmp_path)
    assert result.returncode != 0 and "--base_model" in result.stderr and record.get("requests") == []
