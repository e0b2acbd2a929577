"""scripts/convert.py, run as a user runs it."""
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin


from tests.data.test_conll import EXPECTED_ENTS, IOB1, column_text, ents
from tests.helpers import REPO

pytestmark = pytest.mark.slow
CONVERT = REPO / "scripts" / "convert.py"


def run_convert(*args: str) -> subprocess.CompletedProcess:
    """Run scripts/convert.py from the repo root like project.yml does."""
    return subprocess.run(
        [sys.executable, str(CONVERT), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_script_writes_docbin(tmp_path: Path) -> None:
    vocab = spacy.blank("en").vocab
    source = tmp_path / "train.iob"
    source.write_text(column_text(IOB1, "\t", "-DOCSTART- -X- -X- O"), encoding="utf-8")
    output = tmp_path / "corpus" / "train.spacy"
    result = run_convert(str(source), str(output), "--lang", "en", "--scheme", "iob1")
    assert result.returncode == 0, result.stderr
    assert "train: 1 document, 2 sentences, 12 tokens, 5 entities" in result.stdout
    docs = list(DocBin().from_disk(output).get_docs(vocab))
    assert ents(docs) == EXPECTED_ENTS
    assert [len(list(d.sents)) for d in docs] == [2]


def test_script_exits_1_on_broken_file(tmp_path: Path) -> None:
    source = tmp_path / "bad.iob"
    source.write_text("A O\nB O\n\nbroken\n", encoding="utf-8")
    output = tmp_path / "bad.spacy"
    result = run_convert(str(source), str(output))
    assert result.returncode == 1
    assert "line 4" in result.stderr and "bad.iob" in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
