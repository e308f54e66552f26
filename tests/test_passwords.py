"""Password sources: file, environment, command, prompt, in that order."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from casbak.errors import InputError, PasswordMissing
from casbak.passwords import find_password

PY = shlex.quote(sys.executable)


def _never() -> str:
    raise AssertionError("the prompt must not be asked")


def test_a_password_file_wins_and_gives_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"s3cret pass\r\nsecond line\n")
    env = {"CASBAK_PASSWORD": "from-env", "CASBAK_PASSWORD_COMMAND": "false"}
    assert find_password(path, env, _never) == "s3cret pass"


def test_the_environment_comes_before_the_command() -> None:
    env = {"CASBAK_PASSWORD": "from-env", "CASBAK_PASSWORD_COMMAND": "false"}
    assert find_password(None, env, _never) == "from-env"


def test_a_command_gives_the_first_line_it_prints() -> None:
    command = f"{PY} -c \"print('from command'); print('ignored')\""
    assert find_password(None, {"CASBAK_PASSWORD_COMMAND": command}, _never) == "from command"


def test_an_empty_environment_password_falls_through_to_the_prompt() -> None:
    assert find_password(None, {"CASBAK_PASSWORD": ""}, lambda: "typed") == "typed"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (f"{PY} -c 'import sys; sys.exit(3)'", "exited with status 3"),
        ("/nonexistent/casbak-pw-helper", "did not run"),
        ("", "set but empty"),
        ("'unbalanced", "cannot split"),
        (f"{PY} -c 'pass'", "password is empty"),
        (f'{PY} -c "import sys; sys.stdout.buffer.write(bytes([255]))"', "not UTF-8"),
    ],
)
def test_a_failing_command_is_one_clear_error(command: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        find_password(None, {"CASBAK_PASSWORD_COMMAND": command}, _never)


def test_a_missing_or_empty_password_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read password file"):
        find_password(tmp_path / "absent", {})
    empty = tmp_path / "empty"
    empty.write_bytes(b"\n")
    with pytest.raises(InputError, match="password is empty"):
        find_password(empty, {})


def test_no_source_and_no_terminal_is_password_missing() -> None:
    with pytest.raises(PasswordMissing, match="CASBAK_PASSWORD") as caught:
        find_password(None, {})
    assert caught.value.exit_code == 13


def test_an_empty_answer_at_the_prompt_is_refused() -> None:
    with pytest.raises(InputError, match="empty"):
        find_password(None, {}, lambda: "")
