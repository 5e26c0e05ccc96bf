"""Building a user's own firmware out of tree with the SDK, then running it.

Needs the cross toolchain (Debian's gcc-riscv64-unknown-elf + picolibc); skipped
without it. CI installs it, so there these tests run.
"""

from __future__ import annotations

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


def build(tmp_path: Path, *sources: str, extra: str = "") -> Path:
    out = tmp_path / "app.elf"
    srcs = []
    for name in sources:
        dst = tmp_path / name
        shutil.copy(APPS / name, dst)
        srcs.append(str(dst))
    cmd = ["make", "-s", "-C", str(sdk_dir()), f"APP={' '.join(srcs)}", f"OUT={out}"]
    if extra:
        cmd.append(f"EXTRA_CFLAGS={extra}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return out


def test_unmodified_c_builds_out_of_tree_and_runs(tmp_path):
    elf = build(tmp_path, "linked_list.c")
    out = Session(RunOptions(firmware=str(elf))).run()
    assert out.exit_status == 0, out.report["errors"]
    assert "out of tree: sum=45" in out.report["uart"]
    assert out.report["hypercalls"]["MALLOC"] == 11  # 10 nodes + strdup: picolibc's malloc is never used


def test_extra_cflags_are_added_not_replacing(tmp_path):
    elf = build(tmp_path, "linked_list.c", extra="-DUNUSED_MACRO=1")
    out = Session(RunOptions(firmware=str(elf))).run()
    assert out.exit_status == 0
    # the SDK's own flags (frame pointers, debug info) survived: sites resolve to file:line
    tmp_name = "linked_list.c"
    assert tmp_name in Path(elf).read_bytes().decode("latin-1")


def test_build_has_no_host_paths(tmp_path):
    elf = build(tmp_path, "linked_list.c")
    assert str(tmp_path).encode() not in elf.read_bytes()
