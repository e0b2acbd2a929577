"""Score a trained pipeline on a .spacy file with the gold tokens and whole
documents (the CoNLL way), print a per-type P/R/F table and write the scores
as JSON.

    python scripts/evaluate.py MODEL DATA.spacy [--output scores.json]
                               [--displacy-path DIR] [--displacy-limit 25]
                               [--drop-sentences | --raw-text] [--exclude sentencizer]

`spacy evaluate` (also run by project.yml) re-tokenises the text, so tokens
spaCy splits differently from the gold count as errors; this script does not.
--drop-sentences removes the gold sentence starts (the pipeline's own
sentencizer, if any, then sets them); --raw-text scores as `spacy evaluate`
does, the pipeline's own tokenizer and sentences on each document's text,
as users meet their own raw text; --exclude leaves
pipeline components out. Its --displacy-path renders entities only for spaCy's own `ner` factory, so
the displaCy page of our predictions is written here (DIR/entities.html).
"""
import argparse
import json
from pathlib import Path
from typing import Dict

import spacy
from spacy import displacy

from spacy_rnn_ner.scoring import evaluate_gold_tokens, evaluate_raw_text, gold_token_examples


def format_table(scores: Dict) -> str:
    """A fixed-width table: one row per entity type, then the overall row."""
    rows = [("type", "P", "R", "F")]
    for label, prf in sorted(scores["ents_per_type"].items()):
        rows.append((label, f"{100 * prf['p']:.2f}", f"{100 * prf['r']:.2f}", f"{100 * prf['f']:.2f}"))
    rows.append(("ALL", f"{100 * scores['ents_p']:.2f}", f"{100 * scores['ents_r']:.2f}", f"{100 * scores['ents_f']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="pipeline directory or package name")
    parser.add_argument("data", type=Path, help=".spacy file with gold entities")
    parser.add_argument("--output", type=Path, default=None, help="write the scores here as JSON")
    parser.add_argument("--displacy-path", type=Path, default=None, help="write DIR/entities.html of the predictions")
    parser.add_argument("--displacy-limit", type=int, default=25, help="documents to render")
    parser.add_argument("--drop-sentences", action="store_true", help="score without the gold sentence starts")
    parser.add_argument("--raw-text", action="store_true", help="score on the raw text: the pipeline's own tokens and sentences")
    parser.add_argument("--exclude", nargs="*", default=[], help="pipeline components to leave out")
    args = parser.parse_args()
    nlp = spacy.load(args.model, exclude=args.exclude)
    if args.raw_text:
        scores = evaluate_raw_text(nlp, args.data)
        how = "raw text: the pipeline's own tokens and sentence starts"
    else:
        scores = evaluate_gold_tokens(nlp, args.data, sentences=not args.drop_sentences)
        sents = "no sentence starts given" if args.drop_sentences else "gold sentence starts"
        how = f"gold tokens, whole documents, {sents}"
    print(f"{args.data}: {scores['n_docs']} documents, {scores['n_words']:,} gold tokens ({how})")
    print(format_table(scores))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(scores, indent=2))
    if args.displacy_path:
        examples = gold_token_examples(nlp, args.data)[: args.displacy_limit]
        docs = list(nlp.pipe(eg.predicted for eg in examples))
        args.displacy_path.mkdir(parents=True, exist_ok=True)
        html = displacy.render(docs, style="ent", page=True)
        (args.displacy_path / "entities.html").write_text(html, encoding="utf8")
        print(f"displaCy page of {len(docs)} documents: {args.displacy_path / 'entities.html'}")


if __name__ == "__main__":
    main()
