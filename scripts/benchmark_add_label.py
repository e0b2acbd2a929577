"""The README recipe "add an entity type to a trained pipeline", measured: F1
of the old types before and after a new type is learned, with and without
rehearsal, and the new type's F1.

    python scripts/benchmark_add_label.py [--train assets/demo/train.iob] [--dev assets/demo/dev.iob] \
        [--new-label MISC] [--seeds 0 1 2]

1. A pipeline with the default model learns every type but the new one, from
   the training documents with the new type's entities removed.
2. The new type is added (`add_label`), and the pipeline learns from the
   other half of the documents, annotated two ways: with every type (the
   README's recipe: new examples keep the old types' annotation) or with the
   new type only (every other token "O", as when someone labels a new type on
   fresh text: the hard case). Variant "update": `nlp.update` alone. Variant
   "update + rehearse": each step also calls `nlp.rehearse` on the text of
   the first half (no annotation).
3. Per-type F1 on dev (gold tokens), before and after; mean over seeds.
"""
import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import spacy
from spacy.training import Example
from spacy.util import fix_random_seed, minibatch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

from spacy_rnn_ner.data.conll import read_conll  # noqa: E402


def with_ents(nlp, doc, keep) -> Example:
    """An Example on `doc`'s tokens and sentences whose reference keeps only the
    entities whose label `keep` accepts (every other token 'O')."""
    from spacy.tokens import Doc, Span

    shape = {
        "words": [t.text for t in doc],
        "spaces": [bool(t.whitespace_) for t in doc],
        "sent_starts": [bool(t.is_sent_start) for t in doc],
    }
    reference = Doc(nlp.vocab, **shape)
    reference.set_ents([Span(reference, e.start, e.end, label=e.label_) for e in doc.ents if keep(e.label_)], default="outside")
    return Example(Doc(nlp.vocab, **shape), reference)


def per_type_f1(nlp, dev: List[Example]) -> Dict[str, float]:
    scores = nlp.evaluate([Example(eg.predicted.copy(), eg.reference) for eg in dev])
    return {label: 100 * v["f"] for label, v in (scores["ents_per_type"] or {}).items()}


def train_steps(nlp, examples: List[Example], optimizer, epochs: int, rehearse: List[Example] = ()) -> None:
    for _ in range(epochs):
        random.shuffle(examples)
        for batch in minibatch(examples, size=16):
            nlp.update(batch, sgd=optimizer, drop=0.1)
            if rehearse:
                nlp.rehearse(random.sample(rehearse, min(len(rehearse), len(batch))), sgd=optimizer)


def run(seed: int, docs_train, docs_dev, new_label: str, base_epochs: int, new_epochs: int) -> Dict:
    random.seed(seed)
    fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("rnn_tagger", config={"threshold": 0.6})
    half = len(docs_train) // 2
    base = [with_ents(nlp, d, lambda label: label != new_label) for d in docs_train]
    dev = [with_ents(nlp, d, lambda label: True) for d in docs_dev]
    optimizer = nlp.initialize(lambda: base)
    train_steps(nlp, base, optimizer, base_epochs)
    before = per_type_f1(nlp, dev)
    saved = nlp.to_bytes()
    results = {"before": before}
    for variant in VARIANTS:
        random.seed(seed)
        fix_random_seed(seed)
        grown = spacy.blank("en")
        grown.add_pipe("rnn_tagger", config={"threshold": 0.6})
        grown.from_bytes(saved)
        grown.resume_training()
        grown.get_pipe("rnn_tagger").add_label(new_label)
        optimizer = grown.create_optimizer()
        keep = (lambda label: True) if variant.startswith("all") else (lambda label: label == new_label)
        new = [with_ents(grown, d, keep) for d in docs_train[half:]]
        old_text = [Example(eg.predicted.copy(), eg.predicted.copy()) for eg in base[:half]]
        train_steps(grown, new, optimizer, new_epochs, old_text if "rehearse" in variant else [])
        results[variant] = per_type_f1(grown, dev)
    return results


VARIANTS = ("all types: update", "all types: update + rehearse", "new type only: update", "new type only: update + rehearse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, default=ROOT / "assets" / "demo" / "train.iob")
    parser.add_argument("--dev", type=Path, default=ROOT / "assets" / "demo" / "dev.iob")
    parser.add_argument("--new-label", default="MISC")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base-epochs", type=int, default=30)
    parser.add_argument("--new-epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    docs_train, _ = read_conll(args.train)
    docs_dev, _ = read_conll(args.dev)
    start = time.time()
    runs = [run(s, docs_train, docs_dev, args.new_label, args.base_epochs, args.new_epochs) for s in args.seeds]
    labels = sorted({label for r in runs for label in r["before"]})
    old = [label for label in labels if label != args.new_label]

    def mean(stage: str, label: str) -> str:
        values = [r[stage].get(label, 0.0) for r in runs]
        return f"{statistics.mean(values):.1f}"

    def old_mean(stage: str) -> str:
        return f"{statistics.mean(statistics.mean(r[stage].get(l, 0.0) for l in old) for r in runs):.1f}"

    lines = [
        "## Adding an entity type to a trained pipeline (the README recipe)",
        "",
        f"Written by `python scripts/benchmark_add_label.py` on {time.strftime('%Y-%m-%d')} ({(time.time() - start) / 60:.1f} min). "
        f"Machine: {machine_description()}. Data: `{args.train.relative_to(ROOT) if args.train.is_relative_to(ROOT) else args.train.name}` "
        f"(train) and `{args.dev.relative_to(ROOT) if args.dev.is_relative_to(ROOT) else args.dev.name}` (dev, gold tokens); "
        f"seeds {', '.join(map(str, args.seeds))}, mean dev F1 per type. The default model first learns every type but "
        f"{args.new_label} ({args.base_epochs} epochs over all training documents without {args.new_label}); then "
        f"`add_label(\"{args.new_label}\")` and {args.new_epochs} epochs over the other half of the documents, annotated "
        f"with all types (the README's recipe) or with {args.new_label} only (every other token \"O\": the hard case), "
        "with `nlp.update` alone or with `nlp.rehearse` on the text of the first half.",
        "",
        "| stage | " + " | ".join(f"{label} F1" for label in labels) + " | old types, mean F1 |",
        "|---|" + "---|" * len(labels) + "---|",
    ]
    for stage in ("before", *VARIANTS):
        name = f"before (no {args.new_label})" if stage == "before" else f"after, new examples mark {stage}"
        lines.append(f"| {name} | " + " | ".join(mean(stage, label) for label in labels) + f" | {old_mean(stage)} |")
    lines.append("")
    section = "\n".join(lines)
    replace_section(args.output, "add-label", section)
    print(section)


if __name__ == "__main__":
    main()
