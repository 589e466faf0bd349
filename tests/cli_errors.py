"""What an expected failure of the CLI looks like: one ``tradelake: error:`` line, non-zero exit."""

from __future__ import annotations

import subprocess


def assert_one_line_error(result: subprocess.CompletedProcess, expected: str, secret: str | None = None) -> str:
    """Exactly one non-empty stderr line, ``tradelake: error: …`` containing ``expected``; no
    traceback; ``secret`` (if given) in neither output. Returns the line."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tradelake: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    if secret is not None:
        assert secret not in result.stderr and secret not in result.stdout
    return lines[0]
