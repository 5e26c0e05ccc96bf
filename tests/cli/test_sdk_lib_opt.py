"""`make -C "$(kalloc sdk)" APP=... OPT=...`: the optimization level of the application's code.

GCC at -O2 (and -O1) deletes a store that follows free() of its object: a
use-after-free write in the source is gone from the ELF, and kalloc cannot see
it. OPT=-Og keeps it. Needs the cross toolchain (skipped without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kalloc_machine.sdk import sdk_dir
from kalloc_machine.session import RunOptions, Session

APPS = Path(__file__).resolve().parents[1] / "data" / "apps"

pytestmark = pytest.mark.skipif(
    shutil.which("riscv64-unknown-elf-gcc") is None, reason="cross toolchain not installed"
)


def build(tmp_path: Path, *make_args: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "opt_uaf_store.c"
    shutil.copy(APPS / src.name, src)
    cmd = ["make", "-s", "-C", str(sdk_dir()), f"APP={src}", f"OUT={tmp_path / 'app.elf'}", *make_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def run(tmp_path: Path):
    return Session(RunOptions(firmware=str(tmp_path / "app.elf"))).run()


def test_default_O2_deletes_the_write_after_free(tmp_path):
    assert build(tmp_path).returncode == 0
    out = run(tmp_path)
    assert out.exit_status == 0 and out.report["errors"] == []  # the bug was optimized away


def test_OPT_Og_keeps_the_write_after_free_and_kalloc_reports_it(tmp_path):
    assert build(tmp_path, "OPT=-Og").returncode == 0
    out = run(tmp_path)
    assert out.exit_status == 64
    [err] = out.report["errors"]
    assert err["kind"] == "use-after-free"


def test_OPT_takes_one_flag(tmp_path):
    proc = build(tmp_path, "OPT=-O1 -g")
    assert proc.returncode != 0 and "OPT takes one flag" in proc.stderr


def test_OPT_from_the_environment_is_ignored(tmp_path):
    src = tmp_path / "opt_uaf_store.c"
    shutil.copy(APPS / src.name, src)
    cmd = ["make", "-s", "-C", str(sdk_dir()), f"APP={src}", f"OUT={tmp_path / 'app.elf'}"]
    env = {**os.environ, "OPT": "-Og"}
    assert subprocess.run(cmd, capture_output=True, timeout=300, env=env).returncode == 0
    assert run(tmp_path).exit_status == 0
