"""scripts/benchmark_accuracy.py: each feature the config switches on gets one ablation row."""
import pytest

from thinc.api import Config

from tests.helpers import REPO, load_script

pytestmark = pytest.mark.slow

ROOT = REPO


def test_default_config_ablations_name_real_settings():
    script = load_script("benchmark_accuracy")
    config = Config().from_disk(ROOT / "configs" / "config.cfg", interpolate=False)
    rows = script.ablations_for(config)
    assert rows, "the default config switches features on, so there must be ablations"
    for overrides in rows.values():
        for dotted, value in overrides.items():
            node = config
            *parents, leaf = dotted.split(".")
            for key in parents:
                node = node[key]
            # every ablation changes a setting the config spells out, to a new value
            assert leaf in node, dotted
            assert node[leaf] != value, dotted


def test_memory_threshold_and_sentence_rows():
    script = load_script("benchmark_accuracy")
    config = Config().from_disk(ROOT / "configs" / "config.cfg", interpolate=False)
    model = config["components"]["rnn_tagger"]["model"]
    model["@architectures"] = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
    model["doc_memory"] = True
    model["context"] = "sentence"
    config["components"]["rnn_tagger"]["threshold"] = 0.6
    rows = script.ablations_for(config)
    assert rows["no document memory"]["components.rnn_tagger.model.doc_memory"] is False
    assert rows["whole-doc context instead of sentences"] == {"components.rnn_tagger.model.context": "doc"}
    assert rows["softmax instead of CRF"] == {"components.rnn_tagger.model.@architectures": "spacy_rnn_ner.BiLSTMTagger.v2"}
    assert rows["no confidence threshold"] == {"components.rnn_tagger.threshold": 0.0}
    model["doc_memory"] = False
    config["components"]["rnn_tagger"]["threshold"] = 0.0
    rows = script.ablations_for(config)
    assert "no document memory" not in rows and "no confidence threshold" not in rows


def memory_config(**settings):
    """The default config with the v2 CRF tagger, document memory and `settings`."""
    config = Config().from_disk(ROOT / "configs" / "config.cfg", interpolate=False)
    model = config["components"]["rnn_tagger"]["model"]
    model["@architectures"] = "spacy_rnn_ner.BiLSTMCRFTagger.v2"
    model["doc_memory"] = True
    model.update(settings)
    return config, model


def test_memory_lstm_gets_its_own_row_and_goes_with_the_memory():
    script = load_script("benchmark_accuracy")
    config, model = memory_config(memory_lstm_width=64, memory_conv_width=0)
    rows = script.ablations_for(config)
    prefix = "components.rnn_tagger.model."
    assert rows["no memory LSTM (document memory at the output only)"] == {prefix + "memory_lstm_width": 0}
    assert rows["no document memory"] == {prefix + "doc_memory": False, prefix + "memory_lstm_width": 0}
    model["memory_lstm_width"] = 0
    rows = script.ablations_for(config)
    assert not any(name.startswith("no memory LSTM") for name in rows)
    assert rows["no document memory"] == {prefix + "doc_memory": False}


def test_memory_window_gets_its_own_row():
    script = load_script("benchmark_accuracy")
    config, _ = memory_config(memory_lstm_width=0, memory_conv_width=64)
    rows = script.ablations_for(config)
    prefix = "components.rnn_tagger.model."
    assert rows["no memory window (document memory at the output only)"] == {prefix + "memory_conv_width": 0}
    assert rows["no document memory"] == {prefix + "doc_memory": False, prefix + "memory_conv_width": 0}


def test_raw_text_and_calibration_rows():
    script = load_script("benchmark_accuracy")
    config = Config().from_disk(ROOT / "configs" / "config.cfg", interpolate=False)
    rows = script.ablations_for(config)
    assert rows["gold tokens only (raw_text 0)"] == {"corpora.train.raw_text": 0.0}
    assert rows["no calibration (temperature 1)"] == {"training.before_to_disk": None}
    config["corpora"]["train"]["raw_text"] = 0.0
    config["training"]["before_to_disk"] = None
    rows = script.ablations_for(config)
    assert "gold tokens only (raw_text 0)" not in rows and "no calibration (temperature 1)" not in rows
