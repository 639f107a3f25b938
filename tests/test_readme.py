"""The README's test command is the one CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")]
    command = ci_lines[-1].strip()
    assert "pytest" in command
    assert command in (ROOT / "README.md").read_text()


def test_ci_lints_and_type_checks_before_the_tests():
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")]
    command = ci_lines[-1].strip()
    order = [command.find(step) for step in ("ruff check", "ruff format --check", "mypy", "pytest")]
    assert -1 not in order and order == sorted(order), command
