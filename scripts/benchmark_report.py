"""Shared helpers for the benchmark scripts: describe the machine, and replace
one marked section of BENCHMARKS.md while keeping the others."""
import os
import platform
import re
from pathlib import Path

HEADER = "# Benchmarks\n\nEvery number below was written by a script in `scripts/`; rerun it to reproduce.\n"


def machine_description() -> str:
    """CPU model, core count, memory and library versions, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    import spacy
    import thinc
    import torch

    try:
        import onnxruntime

        runtime = f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        runtime = ", no onnxruntime"
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}, no GPU used; Python {platform.python_version()}, "
        f"spaCy {spacy.__version__}, thinc {thinc.__version__}, torch {torch.__version__}{runtime}"
    )


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between <!-- name:start --> and <!-- name:end -->, adding the markers if needed."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    current = path.read_text(encoding="utf8") if path.exists() else HEADER
    block = f"{start}\n{text.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated, encoding="utf8")
