"""Shared fixtures: a small hand-written NER training set and a tagger trained on it."""
import random
import re
from typing import List, Tuple

import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example

# Written for these tests. Several types, multi-token entities, adjacent
# entities of different types, and a sentence without entities.
BRACKETED = [
    "[PER Angela Moreau] flew from [LOC Lyon] to [LOC New York City] on Monday .",
    "[ORG Nordwind Energy] hired [PER Tomas Berg] as chief engineer .",
    "The [MISC World Cup] final was played in [LOC Buenos Aires] .",
    "[PER Li Wei] signed a contract with [ORG Real Madrid] yesterday .",
    "Shares of [ORG Banco del Norte] fell after the [MISC Christmas] holidays .",
    "[PER Maria de la Cruz] speaks [MISC Spanish] and [MISC Portuguese] .",
    "Nothing unusual happened in the meeting today .",
    "[ORG European Central Bank] officials met in [LOC Frankfurt] .",
    "[LOC Kenya] beat [LOC Uganda] in the [MISC Africa Cup] qualifier .",
    "[PER Jonas] told [ORG Reuters] that [PER Elena Petrova] had resigned .",
    "The [MISC Olympic Games] will return to [LOC Los Angeles] in 2028 .",
    "[ORG Siemens] and [ORG Volvo] announced a joint venture in [LOC Sweden] .",
]


def parse_bracketed(line: str) -> Tuple[str, List[Tuple[int, int, str]]]:
    """'[PER Ann Lee] left .' -> ('Ann Lee left .', [(0, 7, 'PER')])."""
    text, ents, pos = "", [], 0
    for match in re.finditer(r"\[(\w+) ([^\]]+)\]", line):
        text += line[pos : match.start()]
        start = len(text)
        text += match.group(2)
        ents.append((start, len(text), match.group(1)))
        pos = match.end()
    text += line[pos:]
    return text, ents


TRAIN_DATA = [parse_bracketed(line) for line in BRACKETED]

# Tiny batches run faster on one thread, and a second thread spins when the
# machine is busy (measured: 30x slower LSTM backward on 2 loaded cores).
torch.set_num_threads(1)


def make_examples(nlp: Language, data=TRAIN_DATA) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data]


def train_tagger(nlp: Language, examples: List[Example], n_iter: int = 150, seed: int = 0):
    """Initialize and train `nlp` on examples; returns the optimizer."""
    random.seed(seed)
    spacy.util.fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(n_iter):
        random.shuffle(examples)
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return optimizer


SMALL_MODEL = {
    "@architectures": "spacy_rnn_ner.BiLSTMTagger.v1",
    "hidden_width": 32,
    "depth": 1,
    "dropout": 0.1,
    "embed": {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": 32,
        "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
        "rows": [2000, 500, 500, 200],
        "include_static_vectors": False,
    },
}


def blank_with_tagger(**config) -> Language:
    nlp = spacy.blank("en")
    cfg = {"model": SMALL_MODEL}
    cfg.update(config)
    nlp.add_pipe("rnn_tagger", config=cfg)
    return nlp


@pytest.fixture(scope="session")
def trained_nlp() -> Language:
    """A small tagger overfitted on TRAIN_DATA (shared; do not mutate)."""
    nlp = blank_with_tagger()
    train_tagger(nlp, make_examples(nlp))
    return nlp
