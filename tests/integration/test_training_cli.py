"""`spacy train` with our configs, in subprocesses, on the demo data."""
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow

ROOT = REPO


def run(args, cwd=ROOT, timeout=600):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    for split in ("train", "dev"):
        run([sys.executable, "scripts/convert.py", f"assets/demo/{split}.iob", str(out / f"{split}.spacy")])
    return out


def train(config, corpus, out, *extra):
    return run(
        [
            sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / config), "-o", str(out),
            "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
            "--training.max_steps", "12", "--training.eval_frequency", "6", *extra,
        ]
    )


def load_and_tag(model_dir):
    """Load a trained pipeline in a fresh process and tag a sentence."""
    code = (
        "import json, spacy; nlp = spacy.load({!r}); doc = nlp('Maria Lopez flew from Madrid to Paris .');"
        "print(json.dumps([nlp.pipe_names, len(doc), [(e.text, e.label_) for e in doc.ents]]))"
    ).format(str(model_dir))
    names, n_tokens, _ = json.loads(run([sys.executable, "-c", code]).strip().splitlines()[-1])
    return names, n_tokens


@pytest.mark.parametrize("config", ["config.cfg", "tok2vec_listener.cfg", "token_tagger.cfg"])
def test_spacy_debug_config_passes(config):
    out = run([sys.executable, "-m", "spacy", "debug", "config", str(ROOT / "configs" / config)])
    assert "Config is valid" in out


def test_train_default_config_and_load_in_fresh_process(demo_corpus, tmp_path):
    log = train("config.cfg", demo_corpus, tmp_path / "out")
    assert "ENTS_F" in log
    assert (tmp_path / "out" / "model-best" / "rnn_tagger" / "model").exists()
    names, n_tokens = load_and_tag(tmp_path / "out" / "model-best")
    assert names == ["sentencizer", "rnn_tagger"] and n_tokens == 8
    # Calibrated by default: the saved config holds the temperature fitted on dev for the saved weights.
    import spacy

    from spacy_rnn_ner.calibration import fit_temperature
    from spacy_rnn_ner.scoring import gold_token_examples

    nlp = spacy.load(tmp_path / "out" / "model-last")
    saved = nlp.config["components"]["rnn_tagger"]["temperature"]
    nlp.get_pipe("rnn_tagger").cfg["temperature"] = 1.0
    best, _ = fit_temperature(nlp, "rnn_tagger", gold_token_examples(nlp, demo_corpus / "dev.spacy"))
    assert saved == best
    # spaCy's find-threshold tunes the component's threshold.
    out = run([
        sys.executable, "-m", "spacy", "find-threshold", str(tmp_path / "out" / "model-best"),
        str(demo_corpus / "dev.spacy"), "rnn_tagger", "threshold", "ents_f", "--n_trials", "5",
    ])
    assert "Best threshold" in out


def test_train_with_shared_tok2vec_listener(demo_corpus, tmp_path):
    train("tok2vec_listener.cfg", demo_corpus, tmp_path / "out")
    names, _ = load_and_tag(tmp_path / "out" / "model-best")
    assert names == ["tok2vec", "rnn_tagger"]
    import spacy

    nlp = spacy.load(tmp_path / "out" / "model-best")
    tok2vec = nlp.get_pipe("tok2vec")
    # The rnn_tagger's embedding is a listener fed by the shared tok2vec.
    assert [listener.upstream_name for listener in tok2vec.listeners] == ["tok2vec"]
    assert "rnn_tagger" in tok2vec.listening_components


def test_train_with_static_vectors(demo_corpus, tmp_path):
    words = ["Madrid", "Paris", "Lyon", "Maria", "Lopez", "flew", "from", "to", ".", "the", "Bank"]
    lines = [f"{len(words)} 8"] + [
        w + " " + " ".join(f"{((i * 7 + j * 3) % 11) / 10 - 0.5:.2f}" for j in range(8)) for i, w in enumerate(words)
    ]
    (tmp_path / "vectors.txt").write_text("\n".join(lines) + "\n")
    run([sys.executable, "-m", "spacy", "init", "vectors", "en", str(tmp_path / "vectors.txt"), str(tmp_path / "vectors")])
    train("static_vectors.cfg", demo_corpus, tmp_path / "out", "--paths.vectors", str(tmp_path / "vectors"))
    import spacy

    nlp = spacy.load(tmp_path / "out" / "model-best")
    assert nlp.vocab.vectors.shape == (len(words), 8)
    embed = nlp.get_pipe("rnn_tagger").model.get_ref("embed")
    assert any(node.name == "static_vectors" for node in embed.walk())
    assert load_and_tag(tmp_path / "out" / "model-best")[1] == 8


def test_train_token_tagger_config_on_a_pos_column(tmp_path):
    from tests.pipeline.test_token_tagger import TAGGED

    lines = ["-DOCSTART- -X- O", ""]
    for text, tags in TAGGED * 3:
        lines += [f"{word} {tag} O" for word, tag in zip(text.split(), tags.split())] + [""]
    (tmp_path / "pos.iob").write_text("\n".join(lines) + "\n", encoding="utf8")
    run([sys.executable, "scripts/convert.py", str(tmp_path / "pos.iob"), str(tmp_path / "pos.spacy"), "--tag-column", "1"])
    log = run(
        [
            sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "token_tagger.cfg"), "-o", str(tmp_path / "out"),
            "--paths.train", str(tmp_path / "pos.spacy"), "--paths.dev", str(tmp_path / "pos.spacy"),
            "--training.max_steps", "30", "--training.eval_frequency", "10",
        ]
    )
    assert "TAG_ACC" in log
    import spacy

    nlp = spacy.load(tmp_path / "out" / "model-best")
    assert nlp.pipe_names == ["sentencizer", "rnn_token_tagger"]
    tags = {t for _, tagged in TAGGED for t in tagged.split()}
    assert set(nlp.get_pipe("rnn_token_tagger").labels) == tags
    doc = nlp("The cat sat on the mat .")
    assert all(token.tag_ in tags for token in doc)


def test_spacy_assemble_an_untrained_pipeline_from_labels_alone(tmp_path):
    from thinc.api import Config

    config = Config().from_disk(ROOT / "configs" / "config.cfg", interpolate=False)
    config["initialize"]["components"]["rnn_tagger"] = {"labels": ["PER", "ORG", "creative-work"]}
    config.to_disk(tmp_path / "assemble.cfg")
    run([sys.executable, "-m", "spacy", "assemble", str(tmp_path / "assemble.cfg"), str(tmp_path / "out")])
    import spacy

    nlp = spacy.load(tmp_path / "out")
    assert nlp.get_pipe("rnn_tagger").labels == ("PER", "ORG", "creative-work")
    doc = nlp("Maria Lopez flew from Madrid to Paris .")
    assert len(doc) == 8 and "rnn_tagger" in doc.spans
    assert {span.label_ for span in doc.spans["rnn_tagger"]} <= {"PER", "ORG", "creative-work"}
