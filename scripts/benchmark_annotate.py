"""Throughput of `spacy_rnn_ner annotate` with 1 process, n_process=2 and a
2-worker local Dask cluster, on the same input; writes BENCHMARKS.md.

    python scripts/benchmark_annotate.py --model training/conll03/model-best \
        --data corpus/conll03/test.spacy [--words 1000000]

The input is the text of the documents in --data (one document per line),
repeated until it holds about --words words. Each setting runs the command
line in a fresh process; the table gives the command's own words/s (from
the first document to the last, pipeline loading excluded) and the
end-to-end wall time (process start, loading, Dask cluster start included).

With --doc-words 14,50,200 the words of --data are cut into documents of
each of those lengths instead (one input per length, --docs documents each),
to see for which document lengths more processes help:

    python scripts/benchmark_annotate.py --model M --data D --doc-words 14,50,200 \
        --docs 2560 --settings 1,n2 --runs 2 --output -

(--output - prints the table and leaves BENCHMARKS.md alone.)
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import spacy
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchmark_report import machine_description, replace_section  # noqa: E402

SETTINGS = {
    "1": ("1 process", []),
    "n2": ("n_process=2", ["--n-process", "2"]),
    "dask2": ("Dask, 2 local workers", ["--dask", "local:2"]),
}


def data_lines(data: Path) -> List[str]:
    """The texts of the documents in a .spacy file, one line each, whitespace collapsed."""
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    return [" ".join(doc.text.split()) for doc in docs if len(doc)]


def make_input(data: Path, words: int, out: Path) -> int:
    """Write the documents' texts, one per line, repeated to about `words` words; return the word count."""
    lines = data_lines(data)
    sizes = [len(line.split()) for line in lines]
    total, written = 0, []
    while total < words:
        for line, size in zip(lines, sizes):
            written.append(line)
            total += size
            if total >= words:
                break
    out.write_text("\n".join(written) + "\n", encoding="utf8")
    return total


def make_fixed_length_input(data: Path, doc_words: int, n_docs: int, out: Path) -> int:
    """Write `n_docs` documents of `doc_words` whitespace-separated words each, cut from the
    running text of --data (repeated as needed); return the word count."""
    words = " ".join(data_lines(data)).split()
    needed = doc_words * n_docs
    stream = (words * (needed // len(words) + 1))[:needed]
    docs = [" ".join(stream[i : i + doc_words]) for i in range(0, needed, doc_words)]
    out.write_text("\n".join(docs) + "\n", encoding="utf8")
    return needed


def run(model: str, src: Path, out: Path, extra: List[str], batch_size: int, threads: int = 0) -> Dict:
    cmd = [sys.executable, "-m", "spacy_rnn_ner", "annotate", model, str(src), str(out), "-b", str(batch_size), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    start = time.perf_counter()
    result = subprocess.run(cmd + extra, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd + extra)} failed:\n{result.stdout}\n{result.stderr}")
    match = re.search(r"([\d,]+) words in ([\d.]+) s", result.stdout.replace("\n", " "))
    words, seconds = int(match.group(1).replace(",", "")), float(match.group(2))
    return {"words": words, "seconds": seconds, "wps": words / seconds, "wall_s": wall}


def run_settings(model: str, src: Path, tmp: Path, settings: List[str], batch_size: int, runs: int, threads: int) -> Dict:
    """Each setting `runs` times (interleaved, so that a busy spell hits all settings alike)."""
    results: Dict[str, List[Dict]] = {key: [] for key in settings}
    outputs: Dict[str, bytes] = {}
    for i in range(runs):
        for key in settings:
            name, extra = SETTINGS[key]
            out = tmp / f"{key}-{i}.jsonl"
            results[key].append(run(model, src, out, extra, batch_size, threads))
            outputs[key] = out.read_bytes()
            print(src.name, name, results[key][-1], flush=True)
    results["identical"] = len(set(outputs.values())) == 1  # type: ignore[assignment]
    return results


def median(values: List[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help=".spacy file whose texts make the input")
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--doc-words", default="", help="comma-separated document lengths in words, e.g. 14,50,200")
    parser.add_argument("--docs", type=int, default=2560, help="documents per input with --doc-words")
    parser.add_argument("--settings", default="1,n2,dask2", help=f"comma-separated, among {', '.join(SETTINGS)}")
    parser.add_argument("--runs", type=int, default=1, help="runs per setting (the table gives the median)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch threads of the 1-process run (OMP_NUM_THREADS; 0: torch's default); n_process children "
        "and Dask workers always use one",
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="BENCHMARKS.md to update, or - to only print")
    args = parser.parse_args()
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings or "1" not in settings:
        parser.error(f"--settings takes some of {', '.join(SETTINGS)}, including 1 (the baseline)")
    if args.doc_words:
        lines = by_doc_length(args, settings)
        section = "annotate-doc-lengths"
    else:
        lines = by_corpus(args, settings)
        section = "annotate"
    text = "\n".join(lines)
    if args.output != "-":
        replace_section(Path(args.output), section, text)
    print(text)


def by_corpus(args, settings: List[str]) -> List[str]:
    """The original benchmark: the corpus's own documents, repeated to --words words."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.txt"
        n_words = make_input(args.data, args.words, src)
        n_docs = sum(1 for _ in open(src, encoding="utf8"))
        results = run_settings(args.model, src, Path(tmp), settings, args.batch_size, args.runs, args.threads)
    base = median([r["wps"] for r in results["1"]])
    lines = [
        "## Annotating a corpus (`spacy_rnn_ner annotate`)",
        "",
        f"Written by `python scripts/benchmark_annotate.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"Input: the texts of `{args.data}`, one document per line, repeated to {n_docs:,} documents and "
        f"{n_words:,} whitespace-separated words; pipeline `{args.model}`; batch size {args.batch_size}; "
        f"{args.runs} run(s) each (median).",
        "",
        "| setting | words/s (annotating) | vs 1 process | wall time incl. start-up (s) |",
        "|---|---|---|---|",
    ]
    for key in settings:
        wps = median([r["wps"] for r in results[key]])
        wall = median([r["wall_s"] for r in results[key]])
        lines.append(f"| {SETTINGS[key][0]} | {wps:,.0f} | {wps / base:.2f}x | {wall:.1f} |")
    lines += [
        "",
        "Words/s counts spaCy tokens from the first document to the last (pipeline loading excluded; for Dask, "
        "the workers load the pipeline inside that time). "
        "n_process=2 children and Dask workers use one torch thread each.",
        f"Torch threads of the 1-process run: {args.threads or 'torch default'}.",
        f"The outputs are {'byte-for-byte identical' if results['identical'] else 'NOT identical'}.",
        "",
    ]
    return lines


def by_doc_length(args, settings: List[str]) -> List[str]:
    """Documents of fixed lengths: for which lengths do more processes help?"""
    lengths = [int(n) for n in args.doc_words.split(",")]
    rows = []
    for length in lengths:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / f"words-{length}.txt"
            make_fixed_length_input(args.data, length, args.docs, src)
            results = run_settings(args.model, src, Path(tmp), settings, args.batch_size, args.runs, args.threads)
        base = median([r["seconds"] for r in results["1"]])
        for key in settings:
            times = [r["seconds"] for r in results[key]]
            walls = [r["wall_s"] for r in results[key]]
            rows.append(
                f"| {length} | {SETTINGS[key][0]} | {', '.join(f'{t:.1f}' for t in times)} | "
                f"{median(times) / base:.2f}x | {median([r['wps'] for r in results[key]]):,.0f} | "
                f"{', '.join(f'{w:.1f}' for w in walls)} | {'yes' if results['identical'] else 'NO'} |"
            )
    return [
        "## Annotating documents of different lengths (`spacy_rnn_ner annotate`)",
        "",
        f"Written by `python scripts/benchmark_annotate.py --doc-words {args.doc_words}` on "
        f"{time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"Input: {args.docs:,} documents of each length, cut from the words of `{args.data}`; pipeline "
        f"`{args.model}`; batch size {args.batch_size}; {args.runs} run(s) per setting, interleaved; torch threads "
        f"of the 1-process run: {args.threads or 'torch default'} (n_process children use one each).",
        "",
        "| words per doc | setting | annotating time per run (s) | time vs 1 process (median) | words/s (median) | "
        "wall time incl. start-up per run (s) | outputs identical |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


if __name__ == "__main__":
    main()
