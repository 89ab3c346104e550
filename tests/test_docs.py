"""The README is checked: its commands exist, and every command and setting is documented."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli import main
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "kpool") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{prefix} {name}"))
        else:
            names.append(f"{prefix} {name}")
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [name for name in _commands(main) if f"`{name}" not in README]
    assert not missing, f"not in README: {missing}"


def test_every_setting_and_its_variable_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        variable = "ANTHROPIC_API_KEY" if name == "anthropic_api_key" else f"KPOOL_{name.upper()}"
        assert f"| {name} | `{variable}` |" in README, f"{name} ({variable}) not documented"


def test_the_two_commands_are_the_ones_ci_runs() -> None:
    assert "make run" in README and "make test" in README
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\nrun:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
