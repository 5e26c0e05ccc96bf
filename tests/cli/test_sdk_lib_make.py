"""A project with its own Makefile builds against the SDK through `include $(kalloc sdk --prefix)/kalloc.mk`.

tests/data/sdk_project is a small firmware laid out as a team's tree would be: sources in
subdirectories, a private include directory, a static library of its own (lib/ring), and a
define (APP_OVERRUN) that turns a heap overflow on. Built here from a copy outside the
checkout, plain and KASAN, then run on the machine. Needs the cross toolchain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.session import RunOptions, Session

from kalloc.cli import main

PROJECT = Path(__file__).resolve().parents[1] / "data" / "sdk_project"
BIN = Path(sys.executable).parent  # where `kalloc` is installed with this Python

pytestmark = [
    pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="no cross toolchain"),
    pytest.mark.skipif(not (BIN / "kalloc").exists(), reason="the kalloc command is not installed"),
]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def make(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["make", "-C", str(tree), *args]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "sdk_project"
    shutil.copytree(PROJECT, dst, ignore=shutil.ignore_patterns("build*"))
    return dst


def run(elf: Path, sanitize: str = "poison"):
    return Session(RunOptions(firmware=str(elf), sanitize=sanitize)).run()


def test_plain_build_runs_clean(tree):
    make(tree)
    elf = tree / "build" / "app.elf"
    out = run(elf)
    assert out.exit_status == 0, out.report["errors"]
    assert "sdk_project: ring sum=52 dma=yes" in out.report["uart"]
    assert out.report["leaks"]["count"] == 0
    # its own static library, linked into the ELF, and no host path in it
    assert (tree / "build" / "libring.a").read_bytes().startswith(b"!<arch>\n")
    assert str(tree).encode() not in elf.read_bytes()


def test_the_define_turns_the_bug_on_and_poison_finds_it_at_free(tree):
    make(tree, "DEFS=-DAPP_OVERRUN")
    out = run(tree / "build" / "app.elf")
    assert out.exit_status == 64
    [err] = out.report["errors"]
    assert err["kind"] == "out-of-bounds"
    # the alloc site, in the project's own relative path
    assert err["alloc_site"]["location"] == {"file": "src/util/label.c", "line": 13}


def test_kasan_variant_finds_the_overflow_at_the_store(tree):
    make(tree, "KASAN=1", "KALLOC_BUILD=build-kasan", "DEFS=-DAPP_OVERRUN")
    out = run(tree / "build-kasan" / "app.elf", sanitize="kasan")
    assert out.exit_status == 64
    first = out.report["errors"][0]
    assert first["kind"] == "out-of-bounds"
    assert first["symbol"] == "label_make"
    assert first["location"] == {"file": "src/util/label.c", "line": 17}  # the store itself


def test_kasan_variant_without_the_bug_is_clean(tree):
    make(tree, "KASAN=1", "KALLOC_BUILD=build-kasan")
    out = run(tree / "build-kasan" / "app.elf", sanitize="kasan")
    assert out.exit_status == 0, out.report["errors"]


def sdk(*args: str) -> str:
    return CliRunner().invoke(main, ["sdk", *args], catch_exceptions=False).output.strip()


def test_kalloc_mk_variables_agree_with_kalloc_sdk(tmp_path):
    mk = tmp_path / "Makefile"
    mk.write_text(
        f"include {sdk('--prefix')}/kalloc.mk\n"
        "print:\n"
        "\t@echo '$(KALLOC_PLAIN_CFLAGS)'\n\t@echo '$(KALLOC_LDFLAGS)'\n\t@echo '$(KALLOC_PLAIN_LIBS)'\n"
        "\t@echo '$(KALLOC_PLAIN_CFLAGS) $(KALLOC_KASAN_FLAGS)'\n\t@echo '$(KALLOC_KASAN_LIBS)'\n"
    )
    lines = make(tmp_path, "-s", "print").stdout.splitlines()
    want = [sdk("--cflags"), sdk("--ldflags"), sdk("--libs")]
    want += [sdk("--kasan", "--cflags"), sdk("--kasan", "--libs")]
    assert [" ".join(line.split()) for line in lines] == want
