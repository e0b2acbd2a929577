"""Where the raw-text gap comes from: each trained pipeline scored on
CoNLL-2003 test three ways, so that sentence boundaries and tokenization each
get their share of the difference between gold-token and raw-text F1.

1. gold tokens, gold sentence starts (the CoNLL standard);
2. gold tokens, sentence starts from the pipeline's own sentencizer;
3. raw text: the pipeline's tokenizer and sentencizer (`spacy evaluate`).

    python scripts/benchmark_raw_text_gap.py training/benchmark/ours-seed_*/model-best [--test corpus/conll03/test.spacy]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402


def main() -> None:
    import spacy

    from spacy_rnn_ner.scoring import evaluate_gold_tokens, evaluate_raw_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--test", type=Path, default=ROOT / "corpus" / "conll03" / "test.spacy")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        nlp = spacy.load(model)
        rows.append({
            "model": f"{model.parent.name}/{model.name}",
            "gold": 100 * evaluate_gold_tokens(nlp, args.test)["ents_f"],
            "own_sents": 100 * evaluate_gold_tokens(nlp, args.test, sentences=False)["ents_f"],
            "raw": 100 * evaluate_raw_text(nlp, args.test)["ents_f"],
        })
        print(rows[-1], flush=True)

    def line(name: str, group) -> str:
        g, s, r = (statistics.mean(x[k] for x in group) for k in ("gold", "own_sents", "raw"))
        return f"| {name} | {g:.2f} | {s:.2f} | {r:.2f} | {g - s:.2f} | {s - r:.2f} | {g - r:.2f} |"

    lines = [
        "## Where the raw-text gap comes from",
        "",
        f"Written by `python scripts/benchmark_raw_text_gap.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        "Test F1 of each pipeline with gold tokens and gold sentence starts, with gold tokens and the pipeline's own "
        "sentencizer, and on raw text (its own tokenizer and sentencizer). The first difference is what the sentence "
        "boundaries cost, the second what tokenization costs on top.",
        "",
        "| pipeline | gold tokens, gold sentences | gold tokens, own sentences | raw text | sentences cost | tokens cost | gap |",
        "|---|---|---|---|---|---|---|",
        *[line(f"`{r['model']}`", [r]) for r in rows],
    ]
    if len(rows) > 1:
        lines.append(line(f"mean of {len(rows)}", rows))
    lines.append("")
    section = "\n".join(lines)
    replace_section(args.output, "raw-text-gap", section)
    print(section)


if __name__ == "__main__":
    main()
