"""Peak memory of `spacy_rnn_ner annotate` as the input grows: one process,
the same pipeline, inputs of about 100k and 1M words (the text of the
documents in --data, one document per line, repeated). Peak resident memory
of the annotate process comes from the kernel's accounting (os.wait4).

    python scripts/benchmark_annotate_memory.py --model training/benchmark/ours-seed_0/model-best \
        --data corpus/conll03/test.spacy [--words 100000 1000000]
"""
import argparse
import os
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


def write_input(texts: List[str], n_words: int, path: Path) -> int:
    """Repeat `texts` (one per line) until about n_words whitespace-separated words; return the count."""
    total = 0
    with path.open("w", encoding="utf8") as out:
        while total < n_words:
            for text in texts:
                line = " ".join(text.split())
                out.write(line + "\n")
                total += len(line.split())
                if total >= n_words:
                    break
    return total


def measure(model: str, path: Path, out: Path) -> Dict:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spacy_rnn_ner", "annotate", model, str(path), str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"annotate failed: {proc.stderr.read().decode()[-2000:]}")
    return {"peak_mib": usage.ru_maxrss / 1024, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--words", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    nlp = spacy.blank("en")
    texts = [doc.text for doc in DocBin().from_disk(args.data).get_docs(nlp.vocab)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.words:
            path = Path(tmp) / f"input_{n}.txt"
            words = write_input(texts, n, path)
            result = measure(args.model, path, Path(tmp) / f"out_{n}.jsonl")
            rows.append({"words": words, **result})
            print(rows[-1], flush=True)
    lines = [
        "## Annotate: peak memory as the input grows",
        "",
        f"Written by `python scripts/benchmark_annotate_memory.py` on {time.strftime('%Y-%m-%d')}. Machine: {machine_description()}. "
        f"`spacy_rnn_ner annotate {args.model} input.txt out.jsonl`, one process, on the text of `{args.data.name}` "
        "repeated to each size (one document per line). Peak resident memory of the annotate process (kernel accounting); "
        "wall time includes loading the pipeline.",
        "",
        "| input words | peak memory (MiB) | wall time (s) |",
        "|---|---|---|",
        *[f"| {r['words']:,} | {r['peak_mib']:,.0f} | {r['wall_s']:.1f} |" for r in rows],
        "",
    ]
    if len(rows) > 1:
        lines.insert(-1, f"\nPeak memory at the largest input over the smallest: {rows[-1]['peak_mib'] / rows[0]['peak_mib']:.2f}x "
                     f"for {rows[-1]['words'] / rows[0]['words']:.0f}x the words.")
    section = "\n".join(lines)
    replace_section(args.output, "annotate-memory", section)
    print(section)


if __name__ == "__main__":
    main()
