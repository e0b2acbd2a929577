"""Part-of-speech tagging on CoNLL-2003's POS column: `rnn_token_tagger`
(configs/token_tagger.cfg) against spaCy's `tagger` (its efficiency config,
no vectors), trained on the same data in one run; accuracy and speed go into
BENCHMARKS.md.

    python scripts/benchmark_pos.py --data ../shared/data/conll2003 [--jobs 2] [--seed 0]

Accuracy is token accuracy (spaCy's tag_acc) on test: on the gold tokens with
whole documents, and on raw text (the pipeline's own tokenizer; tokens that do
not align with a gold token are left out, as `spacy evaluate` does). Speed:
`nlp.pipe` over the raw test documents, both pipelines loaded in one process,
alternating, median of --runs passes.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_accuracy import spacy_ner_config, train  # noqa: E402
from benchmark_report import machine_description, replace_section  # noqa: E402


def convert(data: Path, corpus: Path) -> None:
    from spacy.tokens import DocBin

    from spacy_rnn_ner.data.conll import read_conll

    corpus.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        out = corpus / f"{split}.spacy"
        if not out.exists():
            docs, _ = read_conll(data / f"{split}.iob", tag_column=1)
            DocBin(docs=docs).to_disk(out)


def accuracy(model: Path, corpus: Path) -> Dict:
    import spacy
    from spacy.training import Corpus

    from spacy_rnn_ner.scoring import gold_token_examples

    nlp = spacy.load(model)
    out = {}
    for split in ("dev", "test"):
        out[split] = nlp.evaluate(gold_token_examples(nlp, corpus / f"{split}.spacy"))["tag_acc"]
    out["raw_test"] = nlp.evaluate(list(Corpus(corpus / "test.spacy")(nlp)))["tag_acc"]
    return out


def speed(models: Dict[str, Path], corpus: Path, runs: int) -> Dict[str, Dict]:
    import spacy
    from spacy.tokens import DocBin

    pipelines = {name: spacy.load(path) for name, path in models.items()}
    some = next(iter(pipelines.values()))
    texts = [doc.text for doc in DocBin().from_disk(corpus / "test.spacy").get_docs(some.vocab)]
    n_words = sum(len(some.make_doc(t)) for t in texts)
    rates: Dict[str, list] = {name: [] for name in pipelines}
    for name, nlp in pipelines.items():  # warm up
        list(nlp.pipe(texts[:20]))
    for _ in range(runs):
        for name, nlp in pipelines.items():
            start = time.perf_counter()
            for _doc in nlp.pipe(texts, batch_size=256):
                pass
            rates[name].append(n_words / (time.perf_counter() - start))
    return {name: {"median": statistics.median(r), "min": min(r), "max": max(r), "words": n_words} for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.iob, dev.iob, test.iob")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll03_pos")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "token_tagger.cfg")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="2: train both side by side, one thread each")
    parser.add_argument("--runs", type=int, default=3, help="speed passes per pipeline")
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "pos")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    convert(args.data, args.corpus)
    threads = 1 if args.jobs > 1 else 2
    plan = {
        "ours": (args.config, args.workdir / "ours"),
        "spacy": (spacy_ner_config(args.workdir / "spacy_tagger.cfg", component="tagger"), args.workdir / "spacy"),
    }
    from concurrent.futures import ThreadPoolExecutor

    def run(item):
        name, (config, out) = item
        info = train(name, config, out, args.corpus, args.seed, 0, threads, 0)
        if "side_by_side" not in info:  # a fresh run: record how it ran
            info["side_by_side"] = args.jobs > 1
            (out / "train_run.json").write_text(json.dumps(info, indent=2))
        return info

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        infos = dict(zip(plan, pool.map(run, plan.items())))
    results = {name: {"train": infos[name], "acc": accuracy(out / "model-best", args.corpus)} for name, (_, out) in plan.items()}
    rates = speed({name: out / "model-best" for name, (_, out) in plan.items()}, args.corpus, args.runs)
    (args.workdir / "pos.json").write_text(json.dumps({"results": results, "speed": rates}, indent=2))

    def row(label: str, name: str) -> str:
        acc, r = results[name]["acc"], rates[name]
        return (
            f"| {label} | {100 * acc['dev']:.2f} | **{100 * acc['test']:.2f}** | {100 * acc['raw_test']:.2f} | "
            f"{r['median']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f}) | {results[name]['train']['wall_s'] / 60:.1f} "
            f"({results[name]['train']['threads']} thread(s){', beside the other' if results[name]['train'].get('side_by_side') else ''}) |"
        )

    diff = 100 * (results["ours"]["acc"]["test"] - results["spacy"]["acc"]["test"])
    ratio = rates["ours"]["median"] / rates["spacy"]["median"]
    section = "\n".join([
        "## Part-of-speech tagging: `rnn_token_tagger` against spaCy's `tagger`",
        "",
        f"Written by `python scripts/benchmark_pos.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        f"CoNLL-2003 English, its part-of-speech column (Penn Treebank tags) kept as token.tag_; seed {args.seed}, "
        "one run each (a run already trained is reused: the train-time column says how each ran). Ours: "
        "`configs/token_tagger.cfg` (the default entity model with a CRF over the tags, no constraints; half of the "
        "training documents read as raw text, as in config.cfg). spaCy's: `spacy init config -p tagger -o efficiency`, "
        "trained on spaCy's own tokens (spacy.Corpus.v1). Token accuracy (tag_acc) on dev and test with gold tokens, "
        f"and on test as raw text. Speed: `nlp.pipe` over the {rates['ours']['words']:,} words of the raw test documents, "
        f"both pipelines in one process, alternating, median of {args.runs} passes (range in brackets).",
        "",
        "| system | dev acc | test acc | test acc, raw text | nlp.pipe words/s | train time (min) |",
        "|---|---|---|---|---|---|",
        row("`rnn_token_tagger`, `configs/token_tagger.cfg`", "ours"),
        row("spaCy `tagger`, efficiency config, no vectors", "spacy"),
        "",
        f"Test accuracy, ours minus spaCy's: {diff:+.2f} points. Throughput, ours over spaCy's: {ratio:.2f}x.",
        "",
    ])
    replace_section(args.output, "pos", section)
    print(section)


if __name__ == "__main__":
    main()
