"""Helpers for scripts that compare commits: a commit checked out into a
temporary git worktree, and Python run inside it (importing that commit's
package)."""
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


def short_rev(rev: str) -> str:
    """The abbreviated hash of a commit name."""
    done = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A temporary worktree of `rev`, removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / short_rev(rev)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, capture_output=True, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)


def run_python(tree: Path, code: str, *args: str) -> str:
    """Run `code` in `tree` with that tree's package first on the path; the
    text after "RESULT " on the line it prints so."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :]
