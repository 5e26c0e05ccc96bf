"""`make -C "$(kalloc sdk)" LAB=1 APP=student.c OUT=...`: a student's file, outside the checkout, linked
into the lab driver and graded; the student's lines in the report are its own. Needs the cross toolchain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import sdk_dir

from kalloc.cli import main
from kalloc.replay import TRACES_DIR

pytestmark = pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="no cross toolchain")

EXAMPLES = sdk_dir() / "lab" / "examples"


def build(src: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    out = src.with_suffix(".elf")
    cmd = ["make", "-C", str(sdk_dir()), f"APP={src}", f"OUT={out}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_student_file_builds_with_lab_1_and_is_graded(tmp_path):
    src = tmp_path / "student.c"
    src.write_text("#define LAB_BUG_OVERLAP 1\n" + (EXAMPLES / "implicit.c").read_text())
    proc = build(src, "LAB=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "student.build" / "obj" / "lab" / "driver.o").is_file()  # the lab's own objects
    trace = str(TRACES_DIR / "coalesce.rep")
    r = CliRunner().invoke(main, ["lab", str(src.with_suffix(".elf")), trace, "-q"])
    assert r.exit_code == 64
    assert "operation 73 (a 40 32) at coalesce.rep:77" in r.stdout
    assert "in mm_malloc (student.c:148)" in r.stdout  # the student's own file, mm_malloc's first line


def test_without_lab_1_no_driver_is_linked(tmp_path):
    src = tmp_path / "plain.c"
    src.write_text("int main(void) { return 0; }\n")
    proc = build(src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "plain.build" / "obj" / "lab").exists()
    r = CliRunner().invoke(main, ["lab", str(src.with_suffix(".elf"))])
    assert r.exit_code == 3 and "not a lab firmware" in r.stderr


def test_kasan_1_instruments_the_students_file_only_and_lab_sanitize_kasan_reports_it(tmp_path):
    src = tmp_path / "student.c"
    src.write_text("#define LAB_BUG_PREV_HEADER 1\n" + (EXAMPLES / "implicit.c").read_text())
    proc = build(src, "LAB=1", "KASAN=1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    student = str(src.with_suffix(".elf"))
    trace = str(TRACES_DIR / "coalesce.rep")
    r = CliRunner().invoke(main, ["lab", student, trace, "-q", "--sanitize", "kasan"])
    assert r.exit_code == 64, r.output
    line = (EXAMPLES / "implicit.c").read_text().splitlines().index("#ifdef LAB_BUG_PREV_HEADER") + 3
    assert "error: out-of-bounds: KASAN: write of 4 byte(s) at " in r.stdout
    assert f"in mm_malloc (student.c:{line})" in r.stdout  # the store itself, in the student's file
    plain = CliRunner().invoke(main, ["lab", student, trace, "-q"])  # the same ELF without the shadow
    assert plain.exit_code == 64 and "payload-access" in plain.stdout
