"""Every command answers ``--help`` with its usage, exit 0."""

import pytest

from catdog.cli.main import COMMANDS, main


@pytest.mark.parametrize("argv", [[]] + [[command.name] for command in COMMANDS], ids=str)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: catdog {' '.join(argv)}".rstrip())
