"""Awkward docs are processed; misuse gets errors that name the component and the fix."""
import tracemalloc

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example

from tests.helpers import blank_with_tagger, make_examples


def test_empty_one_token_and_mixed_batches(trained_nlp):
    assert list(trained_nlp("").ents) == []
    one = trained_nlp("Paris")
    assert len(one) == 1
    long_text = " ".join(["Angela Moreau flew from Lyon to Paris ."] * 40)
    docs = list(trained_nlp.pipe(["", long_text, "", "Kenya", "", ""], batch_size=6))
    assert [len(d) for d in docs][0] == 0 and len(docs[1].ents) >= 40
    assert all(not d.ents for d in (docs[0], docs[2], docs[4], docs[5]))
    assert list(trained_nlp.pipe(["", "", ""])) and all(len(d) == 0 for d in trained_nlp.pipe(["", ""]))


def test_whitespace_and_non_ascii_tokens(trained_nlp):
    texts = [
        "  \n\n Angela   Moreau \t flew to  Zürich\n",
        "Łódź and São Paulo , 東京 and Москва — “quoted” 😀 .",
        "\n",
        " \t ",
    ]
    for text, doc in zip(texts, trained_nlp.pipe(texts)):
        assert doc.text == text
        for ent in doc.ents:
            assert ent.label_ in {"PER", "ORG", "LOC", "MISC"}


def test_huge_doc_memory_grows_linearly(trained_nlp):
    words = ("Angela Moreau met Tomas Berg of Nordwind Energy in New York City today .".split()) * 3847
    doc = Doc(trained_nlp.vocab, words=words[:50_000])
    # numpy's allocations are traced; the peak is this call's alone, whatever ran before.
    tracemalloc.start()
    try:
        doc = trained_nlp(doc)
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert len(doc) == 50_000
    assert len(doc.ents) > 10_000
    # Linear: a few hundred floats per token. Anything quadratic in the doc
    # length (50k x 50k floats = 10 GB) would blow this.
    assert peak_mib < 1000


def test_initialize_without_any_entity_annotation_is_explained():
    nlp = blank_with_tagger()
    examples = [Example.from_dict(nlp.make_doc("No annotation in this one ."), {})]
    with pytest.raises(ValueError, match=r"\[rnn_tagger\].*no.*entity annotation|\[rnn_tagger\].*holds any entity annotation"):
        nlp.initialize(lambda: examples)


def test_initialize_with_only_outside_tags_needs_labels():
    nlp = blank_with_tagger()
    examples = [Example.from_dict(nlp.make_doc("Nothing here ."), {"entities": []})]
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] No entity labels.*labels"):
        nlp.initialize(lambda: examples)


def test_predict_before_initialize_is_explained():
    nlp = blank_with_tagger()
    with pytest.raises(ValueError, match=r"rnn_tagger.*not been initialized.*nlp.initialize"):
        nlp("Angela Moreau flew to Lyon .")


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_weights_are_explained(trained_nlp, tmp_path, damage):
    path = tmp_path / "pipeline"
    trained_nlp.to_disk(path)
    model_file = path / "rnn_tagger" / "model"
    data = model_file.read_bytes()
    if damage == "truncate":
        model_file.write_bytes(data[: len(data) // 2])
    else:
        middle = len(data) // 2
        model_file.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 4000]) + data[middle + 4000 :])
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] Could not load.*truncated, corrupted"):
        spacy.load(path)


def test_truncated_bytes_are_explained(trained_nlp):
    data = trained_nlp.get_pipe("rnn_tagger").to_bytes()
    nlp = blank_with_tagger()
    with pytest.raises(ValueError, match=r"\[rnn_tagger\] Could not load"):
        nlp.get_pipe("rnn_tagger").from_bytes(data[: len(data) - 100])


def test_initialize_twice_keeps_working():
    nlp = blank_with_tagger()
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    optimizer = nlp.initialize(lambda: examples)
    tagger = nlp.get_pipe("rnn_tagger")
    assert tagger.labels == ("LOC", "MISC", "ORG", "PER")  # not doubled
    assert tagger.model.get_ref("output").get_dim("nO") == len(tagger.tags)
    first = nlp.update(examples, sgd=optimizer)["rnn_tagger"]
    for _ in range(20):
        last = nlp.update(examples, sgd=optimizer)["rnn_tagger"]
    assert last < first
