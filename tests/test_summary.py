"""The model summary: its rows count every parameter once, its shapes are
those of a forward pass, and the command summarizes a config and a saved
pipeline."""
import numpy
import pytest
import spacy
import torch
from thinc.api import Model

from spacy_rnn_ner.summary import disk_size, format_summary, main, model_summary, summary_command
from tests.helpers import SMALL_MODEL, TRAIN_DATA, make_examples

# A small CRF tagger with every FeatureEmbed.v2 part except the 1M-word
# cluster table, and the window Maxout over the document memory.
SMALL_CRF_MODEL = {
    "@architectures": "spacy_rnn_ner.BiLSTMCRFTagger.v2",
    "hidden_width": 16,
    "depth": 1,
    "dropout": 0.1,
    "context": "sentence",
    "doc_memory": True,
    "memory_conv_width": 8,
    "embed": {
        "@architectures": "spacy_rnn_ner.FeatureEmbed.v2",
        "width": 16,
        "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
        "rows": [300, 100, 100, 50],
        "use_clusters": False,
        "char_width": 4,
        "n_chars": 4,
        "char_cnn_filters": 8,
        "char_cnn_width": 8,
    },
}

SMALL_CONFIG = """
[nlp]
lang = "en"
pipeline = ["sentencizer", "rnn_tagger"]

[components]

[components.sentencizer]
factory = "sentencizer"

[components.rnn_tagger]
factory = "rnn_tagger"

[components.rnn_tagger.model]
@architectures = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
hidden_width = 8
context = "sentence"
doc_memory = true
memory_conv_width = 4

[components.rnn_tagger.model.embed]
@architectures = "spacy_rnn_ner.FeatureEmbed.v2"
width = 8
attrs = ["NORM", "SHAPE"]
rows = [200, 50]
use_clusters = false
char_width = 2
n_chars = 4
"""


def initialized(model_config) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("rnn_tagger", config={"model": model_config})
    nlp.initialize(lambda: make_examples(nlp))
    return nlp


def real_parameter_count(model: Model) -> int:
    """Every set thinc parameter plus every registered torch parameter, counted without the summary."""
    thinc = sum(node.get_param(name).size for node in model.walk() for name in node.param_names if node.has_param(name))
    torch_params = sum(p.numel() for node in model.walk() for shim in node.shims for p in shim._model.parameters())
    return int(thinc + torch_params)


@pytest.mark.parametrize("model_config", [SMALL_CRF_MODEL, SMALL_MODEL], ids=["crf-feature-embed", "softmax-multihash"])
def test_rows_add_up_to_the_real_parameter_count(model_config):
    nlp = initialized(model_config)
    model = nlp.get_pipe("rnn_tagger").model
    rows = model_summary(nlp)
    assert sum(row.params for row in rows) == real_parameter_count(model)
    assert not [row for row in rows if row.name.startswith("other")]  # every weight has a named row
    # The torch rows are the BiLSTM's, one per direction, and hold all its weights.
    module = model.get_ref("encoder").shims[0]._model
    assert [r.name for r in rows if r.kind == "torch"] == ["BiLSTM layer 1 forward", "BiLSTM layer 1 backward"]
    assert sum(r.params for r in rows if r.kind == "torch") == sum(p.numel() for p in module.state_dict().values())
    text = format_summary(rows)
    assert f"total parameters: {real_parameter_count(model):,}" in text


def test_rows_of_the_feature_embed_and_crf_tagger():
    nlp = initialized(SMALL_CRF_MODEL)
    tagger = nlp.get_pipe("rnn_tagger")
    rows = {row.name: row for row in model_summary(nlp)}
    n_tags = len(tagger.tags)
    assert list(rows) == [
        "known words", "hash table NORM", "hash table PREFIX", "hash table SUFFIX", "hash table SHAPE",
        "character embedding", "character CNN", "mix maxout", "mix layer norm",
        "BiLSTM layer 1 forward", "BiLSTM layer 1 backward", "document memory",
        "window maxout", "window layer norm", "output linear (CRF emissions)", "CRF transitions",
    ]
    assert rows["hash table NORM"] == ("hash table NORM", "(n_tokens, 16)", 300 * 16, "thinc", "300 rows x 16")
    known = len(tagger.model.get_ref("embed").get_ref("known_words").attrs["known_words"])
    assert rows["known words"].params == 0 and f"{known:,} words" in rows["known words"].detail
    assert rows["character embedding"].params == 4 * 256 * 4
    # Shapes: the BiLSTM's directions, [state, memory] and the window's rows beside it.
    assert rows["BiLSTM layer 1 forward"].shape == "(n_tokens, 16)"
    assert rows["document memory"].shape == "(n_tokens, 64)" and rows["document memory"].params == 0
    assert rows["window maxout"].shape == "(n_tokens, 8)"
    assert rows["output linear (CRF emissions)"].params == (64 + 8) * n_tags + n_tags
    assert rows["CRF transitions"] == ("CRF transitions", f"(n_tokens, {n_tags})", n_tags * n_tags, "thinc", f"{n_tags} x {n_tags} tags")


def test_summary_changes_no_prediction_and_no_random_state():
    nlp = initialized(SMALL_CRF_MODEL)
    texts = [text for text, _ in TRAIN_DATA[:3]]
    before = [doc.to_json() for doc in nlp.pipe(texts)]
    model = nlp.get_pipe("rnn_tagger").model
    forwards = [node._func for node in model.walk()]
    numpy.random.seed(3)
    torch.manual_seed(3)
    expected = (numpy.random.rand(), torch.rand(1).item())
    numpy.random.seed(3)
    torch.manual_seed(3)
    model_summary(nlp)
    assert (numpy.random.rand(), torch.rand(1).item()) == expected
    assert [doc.to_json() for doc in nlp.pipe(texts)] == before
    assert all(node._func is func for node, func in zip(model.walk(), forwards))


def test_summary_of_an_uninitialized_component_says_so():
    nlp = spacy.blank("en")
    nlp.add_pipe("rnn_tagger", config={"model": SMALL_MODEL})
    with pytest.raises(ValueError, match="not initialized"):
        model_summary(nlp)


def test_command_on_an_untrained_config(tmp_path):
    path = tmp_path / "small.cfg"
    path.write_text(SMALL_CONFIG, encoding="utf8")
    printed = []
    text = summary_command(str(path), labels="PER,LOC", print_fn=printed.append)
    assert printed == [text]
    assert "hash table SHAPE" in text and "window maxout" in text and "CRF transitions" in text
    # Two labels under BILUO: 2 * 4 + 1 = 9 tags.
    assert "9 x 9 tags" in text and "labels PER, LOC" in text
    assert "size on disk (a temporary copy): component" in text
    totals = {line.split(":")[0]: int(line.split(":")[1].replace(",", "")) for line in text.splitlines() if "parameters:" in line}
    assert totals["total parameters"] == totals["thinc parameters"] + totals["torch parameters"] > 0
    with pytest.raises(ValueError, match="at least one entity label"):
        summary_command(str(path), labels=" , ")


def test_module_entry_point_with_config_overrides(tmp_path, capsys):
    path = tmp_path / "small.cfg"
    path.write_text(SMALL_CONFIG, encoding="utf8")
    assert main([str(path), "--labels", "PER", "--components.rnn_tagger.model.hidden_width", "4"]) == 0
    out = capsys.readouterr().out
    assert "BiLSTM layer 1 backward" in out and "8 -> 4 (4 gates)" in out and "5 x 5 tags" in out
    assert main([str(tmp_path / "missing.cfg")]) == 1
    assert "Config file not found" in capsys.readouterr().err


def test_disk_size_of_a_saved_pipeline(tmp_path):
    nlp = initialized(SMALL_MODEL)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    size = disk_size(loaded, "rnn_tagger", tmp_path / "pipeline")
    assert size.measured_on == str(tmp_path / "pipeline")
    assert 0 < size.component < size.pipeline
    assert size.component == sum(f.stat().st_size for f in (tmp_path / "pipeline" / "rnn_tagger").rglob("*") if f.is_file())
    text = summary_command(str(tmp_path / "pipeline"), print_fn=lambda _: None)
    assert f"component {size.component / 1e6:,.2f} MB" in text
