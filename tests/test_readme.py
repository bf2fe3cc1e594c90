"""The README's command examples, run in order as a reader would run them, so that they stay true."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The file the README's `sessions add` example reads; a reader writes their own (docs/records.md shows the format).
SESSION = """\
date: {today}
clinician: Dr N
details:
  kind: acupuncture
  points: [BL2, ST2, LI4]
"""


def _block_after(heading: str) -> list[str]:
    """The commands of the first ``sh`` block after a README heading, comments dropped."""
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    block = re.search(r"```sh\n(.*?)```", text[start:], flags=re.S)
    assert block, f"no sh block after {heading!r}"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def _run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(line)
    assert words[0] == ".venv/bin/hemicare", line
    env = {key: value for key, value in os.environ.items() if key != "HEMICARE_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "hemicare.cli", *words[1:]], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("heading", ["## Using it", "### Care records"])
def test_the_readme_commands_work_in_order(heading: str, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "session.yaml").write_text(SESSION.format(today=dt.date.today().isoformat()), encoding="utf-8")
    commands = _block_after(heading)
    assert len(commands) >= 4
    for line in commands:
        result = _run(line, tmp_path)
        assert result.returncode == 0, f"{line}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    if heading == "### Care records":
        assert (tmp_path / "hemicare.db").exists() and (tmp_path / "demo-001.json").exists()
