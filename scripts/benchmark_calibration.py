"""Calibration of trained pipelines out of sample: expected calibration error
(ECE) of the entity confidences on test, at temperature 1 and at the
temperature the pipeline's config holds (fitted on dev by the default config's
before_to_disk callback, or by `python -m spacy_rnn_ner calibrate`).

    python scripts/benchmark_calibration.py training/benchmark/ours-seed_*/model-best \
        --dev corpus/conll03/dev.spacy --test corpus/conll03/test.spacy

Writes a table (one row per pipeline, then the mean) into BENCHMARKS.md.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402


def seen_or_not(nlp, examples, train_entities) -> Dict[str, Dict[str, float]]:
    """Accuracy and mean confidence of the predicted entities (at the
    pipeline's temperature) whose text was an entity in the training data,
    and of the others: the split by novelty shows whether a split is harder
    at the same confidence."""
    import numpy

    docs = [eg.predicted.copy() for eg in examples]
    for _name, proc in nlp.pipeline:
        docs = list(proc.pipe(docs))
    key = nlp.get_pipe("rnn_tagger").cfg["spans_key"]
    rows: Dict[str, List] = {"seen": [], "unseen": []}
    for doc, eg in zip(docs, examples):
        gold = {(e.start_char, e.end_char, e.label_) for e in eg.reference.ents}
        group = doc.spans[key]
        for span, p in zip(group, group.attrs["scores"]):
            correct = (span.start_char, span.end_char, span.label_) in gold
            rows["seen" if span.text in train_entities else "unseen"].append((float(p), correct))
    out = {}
    for name, pairs in rows.items():
        arr = numpy.asarray(pairs, dtype="f8").reshape(-1, 2)
        out[name] = {"n": len(pairs), "confidence": float(arr[:, 0].mean()) if len(pairs) else 0.0,
                     "accuracy": float(arr[:, 1].mean()) if len(pairs) else 0.0}
    return out


def entity_confidences(nlp, examples, temperatures, train_entities):
    """Per predicted entity: its confidence at each temperature, whether it is
    exactly a gold entity, and whether its text was an entity in the training
    data. The model runs once; each temperature only re-scores the lattice."""
    import numpy

    tagger = nlp.get_pipe("rnn_tagger")
    docs = [eg.predicted.copy() for eg in examples]
    for name, proc in nlp.pipeline:
        if name == "rnn_tagger":
            break
        docs = list(proc.pipe(docs))
    scores = tagger.model.predict(docs)
    saved = tagger.cfg["temperature"]
    by_t, correct, seen = {}, [], []
    try:
        for t in temperatures:
            tagger.cfg["temperature"] = float(t)
            ps = []
            for doc, eg, pred in zip(docs, examples, tagger.decode_docs(docs, scores)):
                if t == temperatures[0]:
                    gold = {(e.start_char, e.end_char, e.label_) for e in eg.reference.ents}
                for (start, end, label), p in zip(pred.spans, pred.scores):
                    ps.append(p)
                    if t == temperatures[0]:
                        span = doc[start:end]
                        correct.append((span.start_char, span.end_char, label) in gold)
                        seen.append(span.text in train_entities)
            by_t[t] = numpy.asarray(ps, dtype="f8")
    finally:
        tagger.cfg["temperature"] = saved
    return by_t, numpy.asarray(correct, dtype=bool), numpy.asarray(seen, dtype=bool)


def log_loss(p, ok) -> float:
    import numpy

    p = numpy.clip(p, 1e-6, 1 - 1e-6)
    return float(-(ok * numpy.log(p) + (~ok) * numpy.log(1 - p)).mean()) if len(ok) else 0.0


def group_temperatures(dev, test) -> Dict:
    """A temperature for the entities whose text was seen in training and one
    for the others, each with the lowest log loss on its dev entities; the
    test ECE when each test entity is scored at its group's temperature."""
    import numpy

    from spacy_rnn_ner.scoring import calibration

    (dev_p, dev_ok, dev_seen), (test_p, test_ok, test_seen) = dev, test
    fitted = {}
    for name, mask in (("seen", dev_seen), ("unseen", ~dev_seen)):
        fitted[name] = min(GROUP_GRID, key=lambda t: log_loss(dev_p[t][mask], dev_ok[mask]))
    scored = numpy.where(test_seen, test_p[fitted["seen"]], test_p[fitted["unseen"]])
    return {"seen_t": fitted["seen"], "unseen_t": fitted["unseen"], "test_ece": calibration(scored, test_ok)["ece"]}


def measure(model: Path, dev: Path, test: Path, train: Path) -> Dict:
    import spacy
    from spacy.tokens import DocBin

    from spacy_rnn_ner.calibration import fit_temperature
    from spacy_rnn_ner.scoring import gold_token_examples

    nlp = spacy.load(model)
    saved = float(nlp.config["components"]["rnn_tagger"]["temperature"])
    row: Dict = {"model": str(model), "temperature": saved}
    train_entities = {e.text for doc in DocBin().from_disk(train).get_docs(nlp.vocab) for e in doc.ents}
    for split, path in (("dev", dev), ("test", test)):
        examples = gold_token_examples(nlp, path)
        row[f"{split}_novelty"] = seen_or_not(nlp, examples, train_entities)
        best, rows = fit_temperature(nlp, "rnn_tagger", examples, temperatures=sorted({1.0, saved, *FINE_GRID}))
        by_t = {r["temperature"]: r for r in rows}
        row[f"{split}_ece_1"] = by_t[1.0]["ece"]
        row[f"{split}_ece"] = by_t[saved]["ece"]
        row[f"{split}_n"] = by_t[saved]["n"]
        row[f"{split}_best_t"] = best
        row[f"{split}_by_t"] = {t: r["ece"] for t, r in by_t.items()}
        row[f"{split}_entities"] = entity_confidences(nlp, examples, GROUP_GRID, train_entities)
    row["groups"] = group_temperatures(row.pop("dev_entities"), row.pop("test_entities"))
    return row


# A finer grid, to see how far the temperature that fits dev best is from the one that fits test best.
FINE_GRID = (1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.4)
# The grid of the per-group temperatures (a diagnosis: no setting of the component takes them).
GROUP_GRID = tuple(round(1.0 + 0.1 * i, 1) for i in range(26))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--dev", type=Path, default=ROOT / "corpus" / "conll03" / "dev.spacy")
    parser.add_argument("--test", type=Path, default=ROOT / "corpus" / "conll03" / "test.spacy")
    parser.add_argument("--train", type=Path, default=ROOT / "corpus" / "conll03" / "train.spacy")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    rows = [measure(m, args.dev, args.test, args.train) for m in args.models]
    lines = [
        "## Calibration by default: ECE out of sample",
        "",
        f"Written by `python scripts/benchmark_calibration.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        "ECE over 10 equal-width bins of the confidences of all predicted entities (doc.spans, threshold not applied); an "
        "entity is correct when span and label are exactly a gold entity. Gold tokens, whole documents. The temperature is "
        "the one each pipeline's config holds, fitted on dev (lowest log loss over the grid 1, 1.25, 1.5, 1.75, 2, 2.5, 3).",
        "",
        "| pipeline | fitted temperature | dev ECE at 1 | dev ECE, fitted | test ECE at 1 | **test ECE, fitted** | test entities |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {r['temperature']:g} | {r['dev_ece_1']:.4f} | "
            f"{r['dev_ece']:.4f} | {r['test_ece_1']:.4f} | **{r['test_ece']:.4f}** | {r['test_n']:,} |"
        )
    if len(rows) > 1:
        def m(key: str) -> str:
            return f"{statistics.mean(r[key] for r in rows):.4f}"

        lines.append(
            f"| mean of {len(rows)} | {statistics.mean(r['temperature'] for r in rows):.2f} | {m('dev_ece_1')} | {m('dev_ece')} | "
            f"{m('test_ece_1')} | **{m('test_ece')}** | |"
        )
    lines += [
        "",
        "Dev against test, on a finer grid of temperatures (" + ", ".join(f"{t:g}" for t in FINE_GRID) + "): the "
        "temperature with the lowest log loss on each split, and test ECE at each. The test column is a diagnosis, "
        "not a setting: choosing on test would not be out of sample.",
        "",
        "| pipeline | best on dev | test ECE there | best on test | test ECE there |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {r['dev_best_t']:g} | "
            f"{r['test_by_t'][r['dev_best_t']]:.4f} | {r['test_best_t']:g} | {r['test_by_t'][r['test_best_t']]:.4f} |"
        )
    lines += [
        "",
        "By novelty, at each pipeline's fitted temperature: predicted entities whose text was an entity in the "
        "training data (seen) and the others (unseen); accuracy is the share that are exactly a gold entity.",
        "",
        "| pipeline | split | seen: share | seen: accuracy | seen: confidence | unseen: accuracy | unseen: confidence |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for split in ("dev", "test"):
            nv = r[f"{split}_novelty"]
            share = nv["seen"]["n"] / max(1, nv["seen"]["n"] + nv["unseen"]["n"])
            lines.append(
                f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {split} | {share:.2f} | "
                f"{nv['seen']['accuracy']:.3f} | {nv['seen']['confidence']:.3f} | "
                f"{nv['unseen']['accuracy']:.3f} | {nv['unseen']['confidence']:.3f} |"
            )
    lines += [
        "",
        "A temperature per novelty group, each the lowest log loss on that group's dev entities (grid 1 to 3.5 in "
        "steps of 0.1), and the test ECE when every test entity gets its group's temperature: whether a calibrator "
        "that knew which entities are new would transfer from dev to test. A diagnosis only: the component has one "
        "temperature.",
        "",
        "| pipeline | seen: temperature | unseen: temperature | test ECE, one temperature | test ECE, per group |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        g = r["groups"]
        lines.append(
            f"| `{Path(r['model']).parent.name}/{Path(r['model']).name}` | {g['seen_t']:g} | {g['unseen_t']:g} | "
            f"{r['test_ece']:.4f} | {g['test_ece']:.4f} |"
        )
    if len(rows) > 1:
        lines.append(
            f"| mean of {len(rows)} | | | {statistics.mean(r['test_ece'] for r in rows):.4f} | "
            f"{statistics.mean(r['groups']['test_ece'] for r in rows):.4f} |"
        )
    lines.append("")
    section = "\n".join(lines)
    replace_section(args.output, "calibration-default", section)
    print(section)


if __name__ == "__main__":
    main()
