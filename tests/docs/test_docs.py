"""The documentation names every setting, error code, limit and CLI command."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from memvault import ErrorCode, Settings, limits
from memvault.cli.main import app

DOCS = Path(__file__).parents[2] / "docs"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    assert documented == set(Settings.model_fields)


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    for code in ErrorCode:
        assert f"`{code.value}`" in text


def test_every_limit_is_documented() -> None:
    text = (DOCS / "limits.md").read_text()
    names = [n for n in vars(limits) if n.isupper() and not n.endswith("PATTERN")]
    names = [n for n in names if n != "MESSAGE_ROLES"]
    for name in names:
        assert f"`{name}`" in text, name


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    group = get_command(app)
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            for sub in cmd.commands:
                assert f"`{name} {sub}" in text, f"{name} {sub}"
        else:
            assert f"`{name}" in text, name


def test_readme_gives_the_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "memvault demo" in readme
    assert "./scripts/test" in readme
    assert "./scripts/test" in (DOCS.parent / ".ci" / "run").read_text()
