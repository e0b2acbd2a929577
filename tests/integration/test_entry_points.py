"""spaCy finds the factory and architectures through entry points, in a fresh process."""
import pytest
import json
import subprocess
import sys
import textwrap

pytestmark = pytest.mark.slow


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_factory_and_architecture_without_import():
    out = run_python(
        """
        import sys, spacy
        assert "spacy_rnn_ner" not in sys.modules
        nlp = spacy.blank("en")
        pipe = nlp.add_pipe("rnn_tagger")
        arch = spacy.registry.architectures.get("spacy_rnn_ner.BiLSTMTagger.v1")
        print(type(pipe).__name__, arch.__name__)
        """
    )
    assert out.split() == ["RNNTagger", "build_bilstm_tagger"]


def test_saved_pipeline_loads_in_new_process_with_identical_predictions(trained_nlp, tmp_path):
    from tests.helpers import TRAIN_DATA

    texts = [text for text, _ in TRAIN_DATA] + ["Tomas Berg visited Lyon ."]
    trained_nlp.to_disk(tmp_path / "pipeline")
    out = run_python(
        f"""
        import json, sys, spacy
        nlp = spacy.load({str(tmp_path / "pipeline")!r})
        texts = {texts!r}
        print(json.dumps([[(e.start_char, e.end_char, e.label_) for e in nlp(t).ents] for t in texts]))
        """
    )
    expected = [[[e.start_char, e.end_char, e.label_] for e in trained_nlp(t).ents] for t in texts]
    assert json.loads(out) == expected


def test_multiprocessing_pipe_matches_single_process(trained_nlp, tmp_path):
    """n_process=2 forks after torch has run: it must neither hang nor change results."""
    from tests.helpers import TRAIN_DATA

    trained_nlp.to_disk(tmp_path / "pipeline")
    texts = [text for text, _ in TRAIN_DATA] * 3
    code = f"""
        import json, spacy
        nlp = spacy.load({str(tmp_path / "pipeline")!r})
        texts = {texts!r}
        single = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
        multi = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts, n_process=2, batch_size=4)]
        print(json.dumps([single == multi, sum(map(len, single))]))
        """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    same, n_ents = json.loads(result.stdout.strip().splitlines()[-1])
    assert same and n_ents > 0
