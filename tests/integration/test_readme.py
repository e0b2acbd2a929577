"""The README's Python example runs as written."""
import pytest
import re
import subprocess
import sys

from tests.helpers import REPO

pytestmark = pytest.mark.slow

README = REPO / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf8"), flags=re.S)


def test_readme_python_examples_run_in_order():
    """The blocks build on each other (train, then read the confidences), as a reader runs them."""
    blocks = python_blocks()
    assert len(blocks) >= 2, "README lost its Python examples"
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # The first example prints the entities it found: it should find the people.
    assert "'PER')" in lines[0], lines
    # The second prints one line per entity with its confidence.
    scored = [line.rsplit(" ", 2) for line in lines[1:]]
    assert scored and all(0.0 <= float(score) <= 1.0 for _, _, score in scored)
