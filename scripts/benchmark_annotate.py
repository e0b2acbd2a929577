"""Throughput of `spacy_rnn_ner annotate` with 1 process, n_process=2 and a
2-worker local Dask cluster, on the same input; writes BENCHMARKS.md.

    python scripts/benchmark_annotate.py --model training/conll03/model-best \
        --data corpus/conll03/test.spacy [--words 1000000]

The input is the text of the documents in --data (one document per line),
repeated until it holds about --words words. Each setting runs the command
line in a fresh process; the table gives the command's own words/s (from
the first document to the last, pipeline loading excluded) and the
end-to-end wall time (process start, loading, Dask cluster start included).
"""
import argparse
import re
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
    "1 process": [],
    "n_process=2": ["--n-process", "2"],
    "Dask, 2 local workers": ["--dask", "local:2"],
}


def make_input(data: Path, words: int, out: Path) -> int:
    """Write the documents' texts, one per line, repeated to about `words` words; return the word count."""
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    lines = [" ".join(doc.text.split()) for doc in docs if len(doc)]
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


def run(model: str, src: Path, out: Path, extra: List[str], batch_size: int) -> Dict:
    cmd = [sys.executable, "-m", "spacy_rnn_ner", "annotate", model, str(src), str(out), "-b", str(batch_size), "--no-progress"]
    start = time.perf_counter()
    result = subprocess.run(cmd + extra, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd + extra)} failed:\n{result.stdout}\n{result.stderr}")
    match = re.search(r"([\d,]+) words in ([\d.]+) s", result.stdout.replace("\n", " "))
    words, seconds = int(match.group(1).replace(",", "")), float(match.group(2))
    return {"words": words, "seconds": seconds, "wps": words / seconds, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help=".spacy file whose texts make the input")
    parser.add_argument("--words", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "input.txt"
        n_words = make_input(args.data, args.words, src)
        n_docs = sum(1 for _ in open(src, encoding="utf8"))
        results, outputs = {}, {}
        for name, extra in SETTINGS.items():
            out = Path(tmp) / f"{name.split()[0].replace(',', '')}-{len(results)}.jsonl"
            results[name] = run(args.model, src, out, extra, args.batch_size)
            outputs[name] = out.read_bytes()
            print(name, results[name], flush=True)
        identical = len(set(outputs.values())) == 1

    base = results["1 process"]["wps"]
    lines = [
        "## Annotating a corpus (`spacy_rnn_ner annotate`)",
        "",
        f"Written by `python scripts/benchmark_annotate.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}.",
        f"Input: the texts of `{args.data}`, one document per line, repeated to {n_docs:,} documents and "
        f"{n_words:,} whitespace-separated words; pipeline `{args.model}`; batch size {args.batch_size}; one run each.",
        "",
        "| setting | words/s (annotating) | vs 1 process | wall time incl. start-up (s) |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['wps']:,.0f} | {r['wps'] / base:.2f}x | {r['wall_s']:.1f} |")
    lines += [
        "",
        "Words/s counts spaCy tokens from the first document to the last (pipeline loading excluded; for Dask, "
        "the workers load the pipeline inside that time). The 1-process run uses torch's default threads; "
        "n_process=2 children and Dask workers use one torch thread each.",
        f"The three outputs are {'byte-for-byte identical' if identical else 'NOT identical'}.",
        "",
    ]
    replace_section(args.output, "annotate", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
