"""The shipped configs: current architectures, and the factory's default model is the default config's."""
from pathlib import Path

import pytest
from thinc.api import Config

from spacy_rnn_ner.pipeline.rnn_tagger import DEFAULT_MODEL

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.cfg"))
LEGACY = {"spacy_rnn_ner.BiLSTMTagger.v1", "spacy_rnn_ner.BiLSTMCRFTagger.v1", "spacy_rnn_ner.FeatureEmbed.v1"}


def architectures(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "@architectures":
                yield value
            else:
                yield from architectures(value)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_use_the_current_architectures(path):
    names = set(architectures(Config().from_disk(path, interpolate=False)))
    assert any(name.startswith("spacy_rnn_ner.") for name in names)
    assert not names & LEGACY


def test_factory_default_model_is_the_default_configs():
    config = Config().from_disk(CONFIGS[0].parent / "config.cfg", interpolate=False)
    assert config["components"]["rnn_tagger"]["model"] == DEFAULT_MODEL
