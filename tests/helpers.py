"""Shared test helpers: a small hand-written NER training set, a small model
config, training, and the brute-force lattice enumeration that the
dynamic-program tests compare against."""
import importlib.util
import random
import itertools
import sys
import json
import re
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

import numpy
import spacy
import torch
from spacy.language import Language
from spacy.training import Example

from spacy_rnn_ner.annotate import annotate

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




def randomize_output(model) -> None:
    """Output layers start with zero weights; give them random ones so outputs vary with the input."""
    output = model.get_ref("output")
    W = output.get_param("W")
    output.set_param("W", numpy.random.default_rng(0).normal(0, 0.5, W.shape).astype("f"))


def is_valid_sequence(tag_ids: Sequence[int], allowed, start, end) -> bool:
    """Whether a sequence of tag ids obeys the transition constraints (boolean arrays)."""
    if len(tag_ids) == 0:
        return True
    if not start[tag_ids[0]] or not end[tag_ids[-1]]:
        return False
    return all(allowed[a, b] for a, b in zip(tag_ids[:-1], tag_ids[1:]))


def enumerate_paths(scores, constraints, learned=None, allowed_tags=None) -> Iterator[Tuple[Tuple[int, ...], float]]:
    """Every valid tag path of one doc with its score (token scores plus `learned` transitions)."""
    n, n_tags = scores.shape
    for seq in itertools.product(range(n_tags), repeat=n):
        if not is_valid_sequence(seq, *constraints):
            continue
        if allowed_tags is not None and not all(allowed_tags[i, t] for i, t in enumerate(seq)):
            continue
        score = sum(scores[i, t] for i, t in enumerate(seq))
        if learned is not None:
            score += sum(learned[a, b] for a, b in zip(seq, seq[1:]))
        yield seq, score


# -- annotate ---------------------------------------------------------------

TEXTS = [text for text, _ in TRAIN_DATA] + [
    "Tomas Berg visited Lyon and Frankfurt .",
    "",
    "   odd   whitespace\tand tabs  ",
    "Réal Ünïcode naïve café in São Paulo .",
]


def corpus(n: int):
    return [f"{TEXTS[i % len(TEXTS)]}" if i % 7 else f"{TEXTS[i % len(TEXTS)]} Document {i} ." for i in range(n)]


def write_lines(path: Path, lines) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf8")
    return path


def read_jsonl(path: Path):
    # Split on newlines only: str.splitlines would also split inside a record at U+2028 and the like.
    return [json.loads(line) for line in path.read_text(encoding="utf8").split("\n") if line]


def expected_ents(nlp, text):
    return [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]


def annotate_to(pipeline_dir, src, out, **kwargs):
    annotate(pipeline_dir, src, out, progress=False, **kwargs)
    return out


def crash_state(full: Path, src: Path, out: Path, n_records: int, extra_records: int = 0, half_of_next: bool = False) -> Path:
    """What a run killed after counting `n_records` records of `full` leaves at `out`: those
    records, `extra_records` more written but not yet counted, maybe half a record, and a
    resume file that counts `n_records` input documents of `src`."""
    lines = full.read_bytes().splitlines(keepends=True)
    data = b"".join(lines[: n_records + extra_records])
    if half_of_next:
        data += lines[n_records + extra_records][: len(lines[n_records + extra_records]) // 2]
    out.write_bytes(data)
    count_in_resume_file(src, out, n_records)
    return out


def count_in_resume_file(src: Path, out: Path, n_docs: int) -> None:
    """Write the resume file of `out` as a run that made the first `n_docs` documents of `src` safe does."""
    from spacy_rnn_ner.annotate.io import Progress, detect_format, input_digests

    digests = input_digests(src, detect_format(src, None, ("text", "jsonl", "spacy")))
    Progress(out, src).advance([next(digests) for _ in range(n_docs)])


def strict_json(line: str):
    """json.loads that refuses NaN/Infinity and any lone surrogate in the decoded values."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    value = json.loads(line, parse_constant=refuse)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in item), f"lone surrogate in {item!r}"
    return value


def read_strict_jsonl(path: Path):
    """The records of a JSONL output, checking that each line is strict UTF-8 JSON."""
    return [strict_json(line) for line in path.read_bytes().decode("utf8").split("\n") if line]


REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import scripts/NAME.py as a module (the scripts folder is not a package; its
    scripts import each other by name, so it goes on sys.path)."""
    folder = str(REPO / "scripts")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
