"""Nothing lost, nothing run that was not asked, and every failure one line with its exit
status: run folders are claimed, locked and never overwritten unasked; Ctrl-C checkpoints and
resumes to the same numbers; divergence is a failure; OS errors and bad checkpoints are one
line."""
from __future__ import annotations

import errno
import json
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import osmotic
from osmotic import modes
from osmotic.cli import EXIT, main
from osmotic.report.rundir import Lock
from osmotic.runtime.checkpoint import checkpoint_meta
from osmotic.runtime.lifecycle import Interrupted
from tests.test_modes import TINY, config_file

UNIT = {"osml": "epoch", "holonic": "round", "dssl": "round"}
SCORE = {"osml": "context_accuracy", "holonic": "mean_test_accuracy",
         "dssl": "linear_probe_accuracy"}
LONGER = {"osml": {"epochs": 3}, "holonic": {"rounds": 3}, "dssl": {"rounds": 3}}
DIVERGING = {"osml": {"lr": 1e30}, "holonic": {"lr": 1e12}, "dssl": {"lr": 1e12,
                                                                     "optimizer": "sgd"}}


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("osmotic: error: ")]
    assert len(lines) == 1 and len(lines[0]) <= 300 and "Traceback" not in err, err
    return lines[0]


def numbers(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if not re.search(r"seconds|run_dir", k)}


# -- run folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", modes.NAMES)
def test_a_second_run_never_overwrites_the_first(mode: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert cli(capsys, "run", str(config_file(tmp_path, mode)), "--out", str(out))[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # the same run again: read back, nothing run or written
    assert cli(capsys, "run", str(config_file(tmp_path, mode)), "--out", str(out))[0] == 0
    # other settings: refused, the first intact
    other = config_file(tmp_path, mode, seed=1)
    code, err = cli(capsys, "run", str(other), "--out", str(out))
    assert code == EXIT["input"] and "holds another run" in one_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    # --overwrite replaces it
    assert cli(capsys, "run", str(other), "--out", str(out), "--overwrite")[0] == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1


def test_a_folder_of_the_users_files_is_left_alone(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    mine = config_file(tmp_path, "holonic")
    (tmp_path / "config.yaml").write_text("my own notes\n")
    for extra in ([], ["--overwrite"]):
        code, err = cli(capsys, "run", str(mine), "--out", str(tmp_path), *extra)
        assert code == EXIT["input"] and str(tmp_path) in one_line(err)
        assert (tmp_path / "config.yaml").read_text() == "my own notes\n"


def test_overwrite_removes_only_what_a_run_wrote(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("keep me")
    changed = config_file(tmp_path, "holonic", seed=2)
    assert cli(capsys, "run", str(changed), "--out", str(out), "--overwrite")[0] == 0
    assert (out / "notes.txt").read_text() == "keep me"
    with Lock(out):  # released: free to take
        pass


def test_an_unfinished_run_is_resumed_not_overwritten(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out))[0] == 0
    (out / "summary.json").unlink()  # as a run killed before its end leaves it
    code, err = cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out))
    assert code == EXIT["input"] and f"osmotic resume {out}" in one_line(err)


def test_two_processes_never_write_one_folder(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    assert cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out))[0] == 0
    (out / "summary.json").unlink()
    with Lock(out):  # another process resuming it, say
        code, err = cli(capsys, "resume", str(out))
    assert code == EXIT["input"] and "another run is writing here" in one_line(err)
    assert cli(capsys, "resume", str(out))[0] == 0


# -- interruptions -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", modes.NAMES)
def test_ctrl_c_checkpoints_and_resume_gives_the_same_numbers(mode: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture
                                                              ) -> None:
    settings = {**TINY[mode], **LONGER[mode]}
    straight = osmotic.run(mode=mode, out=tmp_path / "straight", progress=False, **settings)

    def ctrl_c_after_the_first(row: dict[str, Any]) -> None:
        if row[UNIT[mode]] == 1:
            signal.raise_signal(signal.SIGINT)

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted, match=rf"interrupted after {UNIT[mode]} 1 of 3; continue "
                                          rf"with: osmotic resume {cut}"):
        osmotic.run(mode=mode, out=cut, progress=False, log=ctrl_c_after_the_first, **settings)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert checkpoint_meta(cut / "checkpoint.safetensors")[UNIT[mode]] == 1
    assert not (cut / "summary.json").exists()
    code, _ = cli(capsys, "resume", str(cut))
    assert code == 0
    resumed = json.loads((cut / "summary.json").read_text())
    assert numbers(resumed) == numbers(straight.summary)


def test_sigterm_from_outside_ends_with_exit_130_and_one_line(tmp_path: Path) -> None:
    path = config_file(tmp_path, "osml", epochs=3)
    script = (f"import os, signal, sys\nfrom osmotic.cli import main\n"
              f"import osmotic.runtime.lifecycle as lc\n"
              f"finish = lc.Lifecycle._finish\n"
              f"def once(self, row):\n    finish(self, row)\n"
              f"    if self.done == 1: os.kill(os.getpid(), signal.SIGTERM)\n"
              f"lc.Lifecycle._finish = once\n"
              f"sys.exit(main(['run', {str(path)!r}, '--out', {str(tmp_path / 'r')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == EXIT["interrupted"], proc.stderr
    assert "interrupted after epoch 1 of 3" in one_line(proc.stderr)


# -- divergence ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", modes.NAMES)
def test_a_diverging_run_fails_with_status_diverged(mode: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    path = config_file(tmp_path, mode, **DIVERGING[mode])
    code, err = cli(capsys, "run", str(path), "--out", str(out))
    assert code == EXIT["failed"]
    assert re.search(rf"diverged in {UNIT[mode]} \d+ of \d+: non-finite (loss|loss or parameters|features) for ",
                     one_line(err))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["agents"]
    assert SCORE[mode] not in summary
    checkpoint_meta(out / "checkpoint.safetensors")  # the last finite one, readable


# -- OS errors and checkpoints -------------------------------------------------------------


def test_a_failing_checkpoint_write_is_one_line_and_keeps_the_last_one(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from osmotic.runtime import lifecycle

    real, calls = lifecycle.save_checkpoint, []

    def disk_full_on_the_third(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "save_checkpoint", disk_full_on_the_third)
    out = tmp_path / "r"
    code, err = cli(capsys, "run", str(config_file(tmp_path, "holonic", rounds=3,
                                                   checkpoint_every=1)), "--out", str(out))
    assert code == EXIT["failed"] and "No space left on device" in one_line(err)
    assert checkpoint_meta(out / "checkpoint.safetensors")["round"] == 1


def test_a_file_size_limit_is_one_line(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE: writes past 64 KiB fail with EFBIG)."""
    path = config_file(tmp_path, "holonic")
    script = (f"import resource, signal, sys\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              f"from osmotic.cli import main\n"
              f"resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
              f"sys.exit(main(['run', {str(path)!r}, '--out', {str(tmp_path / 'r')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert proc.returncode in (EXIT["failed"], EXIT["input"]), proc.stderr
    assert "File too large" in one_line(proc.stderr)
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != 65536  # only the child's


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Permission denied (simulated: the tests may run as root, who writes anywhere)."""
    def denied(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    path = config_file(tmp_path, "holonic")
    monkeypatch.setattr(Path, "mkdir", denied)
    code, err = cli(capsys, "run", str(path), "--out", str(tmp_path / "ro" / "r"))
    assert code == EXIT["input"] and "Permission denied" in one_line(err)
    assert str(tmp_path / "ro" / "r") in err


@pytest.fixture
def unfinished(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    out = tmp_path / "r"
    assert cli(capsys, "run", str(config_file(tmp_path, "osml")), "--out", str(out))[0] == 0
    (out / "summary.json").unlink()
    return out


def test_a_checkpoint_that_lies_is_refused(unfinished: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    from safetensors.torch import load_file, save_file

    path = unfinished / "checkpoint.safetensors"
    meta = checkpoint_meta(path)
    save_file(load_file(str(path)), str(path), metadata={"osmotic": json.dumps(
        {**meta, "epoch": -9})})
    code, err = cli(capsys, "resume", str(unfinished), "--force")
    assert code == EXIT["input"] and "records epoch -9, not one of 0 to 2" in one_line(err)


def test_a_corrupt_checkpoint_is_one_short_line(unfinished: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    path = unfinished / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    path.write_bytes(bytes(data))
    code, err = cli(capsys, "resume", str(unfinished))
    assert code == EXIT["input"] and "not an osmotic checkpoint" in one_line(err)


def test_an_edited_config_is_not_resumed_without_force(unfinished: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    config = unfinished / "config.yaml"
    config.write_text(config.read_text().replace("hidden: 4", "hidden: 5"))
    code, err = cli(capsys, "resume", str(unfinished))
    assert code == EXIT["input"] and "edited since" in one_line(err) and "--force" in err
    config.write_text(config.read_text().replace("hidden: 5", "hidden: 4"))
    assert cli(capsys, "resume", str(unfinished))[0] == 0


def test_a_preset_run_twice_is_read_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`make demo` twice: the data source is part of the settings, so the same run is known."""
    argv = ["osml", "reproduce", "simple", "--epochs", "1", "--threads", "1", "--out",
            str(tmp_path / "r")]
    assert cli(capsys, *argv)[0] == 0
    before = (tmp_path / "r" / "summary.json").read_text()
    code, err = cli(capsys, *argv)
    assert code == 0 and "already holds this run" in err
    assert (tmp_path / "r" / "summary.json").read_text() == before


def test_a_start_stopped_before_its_first_checkpoint_leaves_the_folder_usable(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from osmotic.holonic import runner

    def ctrl_c(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "r"
    with monkeypatch.context() as m:
        m.setattr(runner, "make_terminals", ctrl_c)  # while the engine starts
        code, err = cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out))
    assert code == EXIT["interrupted"] and "interrupted" in one_line(err)
    assert (out / "config.yaml").exists() and not (out / "checkpoint.safetensors").exists()
    assert cli(capsys, "run", str(config_file(tmp_path, "holonic", seed=3)), "--out",
               str(out))[0] == 0


def test_a_diverged_run_is_not_read_back_and_overwrite_spares_other_files(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    diverging = config_file(tmp_path, "holonic", **DIVERGING["holonic"])
    assert cli(capsys, "run", str(diverging), "--out", str(out))[0] == EXIT["failed"]
    code, err = cli(capsys, "run", str(diverging), "--out", str(out))
    assert code == EXIT["input"] and "holds a run that diverged" in one_line(err)
    (out / "models").mkdir(exist_ok=True)
    (out / "models" / "mynet.py").write_text("class Net: pass\n")
    assert cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out", str(out),
               "--overwrite")[0] == 0
    assert (out / "models" / "mynet.py").read_text() == "class Net: pass\n"


def test_a_users_summary_json_is_not_a_run_to_overwrite(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "summary.json").write_text('{"mine": 1}')
    code, err = cli(capsys, "run", str(config_file(tmp_path, "holonic")), "--out",
                    str(tmp_path / "mine"), "--overwrite")
    assert code == EXIT["input"] and "holds no run to overwrite" in one_line(err)
    assert (tmp_path / "mine" / "summary.json").read_text() == '{"mine": 1}'


def test_a_python_api_error_frees_the_folder(tmp_path: Path) -> None:
    def fail(row: dict[str, Any]) -> None:
        raise RuntimeError("a logger's own error")

    with pytest.raises(RuntimeError) as kept:  # the exception (and its frames) stay alive
        osmotic.run(mode="holonic", out=tmp_path / "r", progress=False, log=fail,
                    **TINY["holonic"])
    assert kept.value is not None
    assert osmotic.resume(tmp_path / "r").summary["rounds"] == 2


def test_seeds_up_to_2_to_the_32_minus_1() -> None:
    assert osmotic.holonic.Config(structure="1P", seed=2**32 - 1).seed == 2**32 - 1
    with pytest.raises(ValueError, match="beyond 4294967295"):
        osmotic.holonic.Config(structure="1P", seed=2**32)
