"""Learning curve: train our default config and spaCy's `ner` on 100, 500 and
2,000 sentences of CoNLL-2003 train (whole documents), score both on test with
gold tokens and on raw text, and write a table and a plot into BENCHMARKS.md.

    python scripts/benchmark_learning_curve.py --data ../shared/data/conll2003 \
        [--sizes 100 500 2000] [--seeds 0 1 2] [--full training/benchmark/accuracy.json]

The sample for each size is fixed: the training documents in one seeded random
order, taken from the start until the size is reached, so each sample holds
the smaller ones. The document indices (into train.iob, in file order) are
written to benchmarks/learning_curve_sample.json. The two smallest sizes get
every seed in --seeds, the others the first. The full-data row comes from a
finished `benchmark_accuracy.py` run (--full), not trained again.

Below the full data, ours trains with an evaluation every 100 steps and a
patience of 300 steps (the default's 500/1500 are sized for the full corpus);
spaCy's `ner` keeps its default schedule. Both use their default configs
otherwise.
"""
import argparse
import json
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_accuracy import convert_corpus, score, spacy_ner_config, train  # noqa: E402
from benchmark_report import machine_description, replace_section  # noqa: E402

from spacy_rnn_ner.data.conll import read_conll  # noqa: E402

SAMPLE_SEED = 2003
SMALL_DATA_SCHEDULE = ["--training.eval_frequency", "100", "--training.patience", "300"]


def sample_documents(data: Path, sizes: List[int]) -> Dict[int, Dict]:
    """For each size, the first documents of one seeded order that reach that many sentences."""
    docs, _ = read_conll(data / "train.iob")
    order = list(range(len(docs)))
    random.Random(SAMPLE_SEED).shuffle(order)
    samples = {}
    for size in sizes:
        chosen, n_sents, n_words = [], 0, 0
        for i in order:
            if n_sents >= size:
                break
            chosen.append(i)
            n_sents += len(list(docs[i].sents))
            n_words += len(docs[i])
        samples[size] = {"docs": sorted(chosen), "sentences": n_sents, "words": n_words}
    return samples


def write_subsets(data: Path, corpus: Path, samples: Dict[int, Dict], workdir: Path) -> Dict[int, Path]:
    """One corpus folder per size: the sampled train.spacy beside links to the full dev and test."""
    from spacy.tokens import DocBin

    docs, _ = read_conll(data / "train.iob")
    folders = {}
    for size, sample in samples.items():
        folder = workdir / "corpus" / str(size)
        folder.mkdir(parents=True, exist_ok=True)
        DocBin(docs=[docs[i] for i in sample["docs"]]).to_disk(folder / "train.spacy")
        for split in ("dev", "test"):
            link = folder / f"{split}.spacy"
            if not link.exists():
                link.symlink_to((corpus / f"{split}.spacy").resolve())
        folders[size] = folder
    return folders


def summarize(runs: List[Dict], kind: str, key: str) -> List[float]:
    return [100 * r["scores"][key]["ents_f"] for r in runs if r["kind"] == kind]


def fmt(values: List[float]) -> str:
    if not values:
        return "not measured"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def cut(runs: List[Dict], kind: str) -> str:
    """'*' when a run of this kind was stopped by the time budget."""
    return "*" if any(r["kind"] == kind and r["train"].get("stopped_at_budget") for r in runs) else ""


def render(rows: List[Dict], args: argparse.Namespace, threads: int, plot: Path) -> str:
    lines = [
        "## Learning curve: small training sets",
        "",
        f"Written by `python scripts/benchmark_learning_curve.py` on {time.strftime('%Y-%m-%d')}. "
        f"Machine: {machine_description()}. {args.jobs} run(s) side by side, {threads} torch/BLAS thread(s) each.",
        "",
        "Each size is whole training documents of CoNLL-2003 in one seeded random order, taken until the size is "
        "reached (indices in `benchmarks/learning_curve_sample.json`). Both systems use their default configs; "
        "below the full data ours evaluates every 100 steps with a patience of 300 steps. Test F1 on gold tokens "
        "(whole documents, gold sentence starts) and on raw text (the pipeline's own tokenizer and sentence "
        "boundaries, as `spacy evaluate`). Mean ± standard deviation over seeds where there is more than one run. "
        + (f"Each run had at most {args.time_budget:g} minutes; a train time marked * means some run of that row was "
           "cut by it (model-best is the best dev score reached by then)." if args.time_budget else ""),
        "",
        "| training sentences (docs, words) | seeds | ours, gold tokens | ours, raw text | spaCy `ner`, gold tokens "
        "| spaCy `ner`, raw text | ours minus spaCy (raw text) | train time, ours / spaCy (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row["runs"]
        ours_raw, theirs_raw = summarize(runs, "ours", "raw_test"), summarize(runs, "spacy", "raw_test")
        diff = f"{statistics.mean(ours_raw) - statistics.mean(theirs_raw):+.2f}" if ours_raw and theirs_raw else ""
        minutes = {
            kind: statistics.mean(r["train"]["wall_s"] for r in runs if r["kind"] == kind) / 60
            for kind in ("ours", "spacy")
            if any(r["kind"] == kind for r in runs)
        }
        seeds = sorted({r["seed"] for r in runs})
        lines.append(
            f"| {row['label']} | {', '.join(map(str, seeds))} | {fmt(summarize(runs, 'ours', 'test'))} | "
            f"**{fmt(ours_raw)}** | {fmt(summarize(runs, 'spacy', 'test'))} | **{fmt(theirs_raw)}** | {diff} | "
            f"{minutes.get('ours', float('nan')):.1f}{cut(runs, 'ours')} / {minutes.get('spacy', float('nan')):.1f}{cut(runs, 'spacy')} |"
        )
    lines += ["", f"![F1 against training size]({plot.relative_to(args.output.parent.resolve()).as_posix()})", ""]
    return "\n".join(lines)


def draw(rows: List[Dict], plot: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [row["sentences"] for row in rows]
    for kind, name, color in (("ours", "rnn_tagger", "tab:blue"), ("spacy", "spaCy ner", "tab:orange")):
        for key, style, what in (("test", "-", "gold tokens"), ("raw_test", "--", "raw text")):
            ys = [statistics.mean(summarize(row["runs"], kind, key) or [float("nan")]) for row in rows]
            ax.plot(xs, ys, style, marker="o", color=color, label=f"{name}, {what}")
    ax.set_xscale("log")
    ax.set_xlabel("training sentences (CoNLL-2003 train, whole documents)")
    ax.set_ylabel("test F1")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with train.iob, dev.iob, test.iob")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll03")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "config.cfg")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full", type=Path, help="accuracy.json of a benchmark_accuracy.py run for the full-data row")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--time-budget", type=float, default=0, help="minutes per training run (0: no limit; model-best is the best dev score by then)")
    parser.add_argument("--threads", type=int, default=0, help="torch/BLAS threads per run (0: cores / jobs)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "learning_curve")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "learning_curve.png")
    args = parser.parse_args()
    args.output = args.output.resolve()

    convert_corpus(args.data, args.corpus)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    sizes = sorted(args.sizes)
    samples = sample_documents(args.data, sizes)
    sample_file = ROOT / "benchmarks" / "learning_curve_sample.json"
    sample_file.parent.mkdir(parents=True, exist_ok=True)
    sample_file.write_text(json.dumps({"seed": SAMPLE_SEED, "source": "train.iob", "sizes": samples}, indent=1))
    folders = write_subsets(args.data, args.corpus, samples, args.workdir)
    spacy_cfg = spacy_ner_config(args.workdir / "spacy_ner.cfg")

    plan = []
    for rank, size in enumerate(sizes):
        for seed in args.seeds if rank < 2 else args.seeds[:1]:
            plan.append(("ours", size, seed))
            plan.append(("spacy", size, seed))

    def run(item) -> Dict:
        kind, size, seed = item
        out = args.workdir / f"{kind}-{size}-seed_{seed}"
        config, extra = (args.config, SMALL_DATA_SCHEDULE) if kind == "ours" else (spacy_cfg, [])
        info = train(f"{kind} {size}", config, out, folders[size], seed, args.time_budget, threads, 0, extra)
        return {"kind": kind, "size": size, "seed": seed, "train": info, "scores": score(out, folders[size])}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(run, plan))
    rows = [
        {
            "label": f"{samples[s]['sentences']:,} ({len(samples[s]['docs'])}, {samples[s]['words']:,})",
            "sentences": samples[s]["sentences"],
            "runs": [r for r in runs if r["size"] == s],
        }
        for s in sizes
    ]
    if args.full:
        full = [r for r in json.loads(args.full.read_text()) if r["kind"] in ("ours", "spacy")]
        docs, _ = read_conll(args.data / "train.iob")
        n_sents = sum(len(list(d.sents)) for d in docs)
        n_words = sum(len(d) for d in docs)
        rows.append({"label": f"all: {n_sents:,} ({len(docs)}, {n_words:,})", "sentences": n_sents, "runs": full})
    (args.workdir / "learning_curve.json").write_text(json.dumps(rows, indent=2))
    draw(rows, args.plot.resolve())
    replace_section(args.output, "learning-curve", render(rows, args, threads, args.plot.resolve()))
    print(f"wrote the learning curve into {args.output} and {args.plot}")


if __name__ == "__main__":
    main()
