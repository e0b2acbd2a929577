"""project.yml parses, its workflows name real commands, and (slow) the demo
workflow runs end to end and the packaged pipeline installs into a fresh venv."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest
from weasel.util import load_project_config

from tests.helpers import REPO

pytestmark = pytest.mark.slow

ROOT = REPO


@pytest.fixture(scope="module")
def project():
    return load_project_config(ROOT)


def test_project_has_the_expected_shape(project):
    for key in ("title", "description", "vars", "directories", "assets", "commands", "workflows"):
        assert project.get(key), key
    assert set(project["workflows"]) >= {"all", "conll03"}
    assert project["workflows"]["all"] == ["convert-demo", "train-demo", "evaluate-demo", "report-demo", "package-demo"]


def test_workflows_name_existing_commands(project):
    names = {cmd["name"] for cmd in project["commands"]}
    for workflow, steps in project["workflows"].items():
        missing = [step for step in steps if step not in names]
        assert not missing, f"workflow {workflow} names unknown commands {missing}"
    assert {"convert-demo", "train-demo", "evaluate-demo", "package-demo", "benchmark-accuracy"} <= names


def test_commands_reference_existing_scripts_and_declare_deps_outputs(project):
    for cmd in project["commands"]:
        assert cmd.get("deps") and (cmd.get("outputs") or cmd.get("outputs_no_cache")), cmd["name"]
        for line in cmd["script"]:
            for token in shlex.split(line):
                if token.startswith("scripts/") or token.startswith("configs/"):
                    assert (ROOT / token).exists(), f"{cmd['name']}: {token} is missing"


def test_conll_assets_have_no_url_and_carry_checksums(project):
    conll = [a for a in project["assets"] if "conll2003" in a["dest"]]
    assert len(conll) == 3
    for asset in conll:
        assert "url" not in asset, "CoNLL-2003 may not be downloaded from a mirror"
        assert len(asset["checksum"]) == 32 and asset["description"]


@pytest.mark.slow
def test_demo_workflow_and_package_install(tmp_path):
    """`spacy project run all` on a copy of the repo, then pip-install the package into a fresh venv."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(".git", ".venv*", "training", "corpus", "packages", "metrics", "__pycache__"))
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "spacy", "project", "run", "all", "."], cwd=work, check=True, env=env, timeout=1800)
    sdists = list((work / "packages").glob("*/dist/*.tar.gz"))
    assert len(sdists) == 1
    assert (work / "metrics" / "demo-displacy" / "entities.html").exists()
    assert (work / "metrics" / "demo-report" / "report.html").exists()
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True, timeout=1800)
    # spacy-rnn-ner is not on PyPI: the package's requirement is met from the local wheel.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--find-links", str(wheels), str(sdists[0])], check=True, timeout=1800
    )
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    assert "spacy-rnn-ner" in freeze.replace("_", "-")
    code = (
        "import spacy; nlp = spacy.load('en_rnn_ner_demo'); doc = nlp('Maria Lopez flew to Madrid .');"
        "print(nlp.pipe_names, [(e.text, e.label_) for e in doc.ents])"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "['sentencizer', 'rnn_tagger']" in out.stdout
