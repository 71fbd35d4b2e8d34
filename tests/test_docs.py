"""The documentation site builds strictly, and nothing points outside the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Pointers to the design notes kept beside the repository, which a clone does not have. They are
# assembled from parts so that this file, checked like every other, does not contain them itself.
_NOTES, _DESIGN = "shared", "DESIGN"
FORBIDDEN = (f"../{_NOTES}", f"{_NOTES}/reference", f"{_DESIGN} §", f"{_DESIGN}.md")


def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "index.html").is_file()


def test_no_pointers_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{name}: {word}" for word in FORBIDDEN if word in text]
    assert hits == []
