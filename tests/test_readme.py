"""The README's Python example runs as written."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf8"), flags=re.S)


def test_readme_python_example_runs():
    blocks = python_blocks()
    assert blocks, "README has no ```python example"
    for code in blocks:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        printed = result.stdout.strip().splitlines()[-1]
        # The example prints the entities it found: it should find the people.
        assert "'PER')" in printed, printed
