"""`kalloc sdk --arch armv7m`: a user project builds for the Cortex-M4 machine with Make, pkg-config or
the SDK's own Makefile, and runs on the stm32f4 board.

tests/data/sdk_project (copied outside the checkout) built with `KALLOC_ARCH=armv7m` through
kalloc.mk, plain and KASAN; one C file built with `pkg-config kalloc-armv7m` flags alone; and
`make -C "$(kalloc sdk)" ARCH=armv7m APP=... OUT=...`. Needs arm-none-eabi-gcc (CI installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.sdk import ARCHES, build_flags, pc_name
from kalloc_machine.session import RunOptions, Session

from kalloc.cli import main

PROJECT = Path(__file__).resolve().parents[1] / "data" / "sdk_project"
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no ARM cross toolchain"),
    pytest.mark.skipif(not (BIN / "kalloc").exists(), reason="the kalloc command is not installed"),
]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(*cmd: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def sdk(*args: str) -> str:
    res = CliRunner().invoke(main, ["sdk", *args])
    assert res.exit_code == 0, res.output
    return res.output.strip()


def run_arm(elf: Path, sanitize: str = "poison") -> dict:
    return Session(RunOptions(firmware=str(elf), board="stm32f4", sanitize=sanitize)).run().report


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    dst = tmp_path / "sdk_project"
    shutil.copytree(PROJECT, dst, ignore=shutil.ignore_patterns("build*"))
    return dst


def test_the_arm_queries_name_the_arm_sdk() -> None:
    assert "armv7m" in ARCHES and pc_name("armv7m", kasan=True) == "kalloc-armv7m-kasan"
    cflags = sdk("--arch", "armv7m", "--cflags")
    assert "-mcpu=cortex-m4 -mthumb -mfloat-abi=soft" in cflags and "arm/kalloc.specs" in cflags
    assert sdk("--arch", "armv7m", "--libs").endswith("build/armv7m/libkalloc_sdk.a -Wl,--no-whole-archive")
    assert sdk("--arch", "armv7m", "--linker-script").endswith("/arm/link.ld")
    for kasan in (False, True):
        assert build_flags("armv7m", kasan).library.is_file()


def test_kalloc_mk_builds_the_project_for_cortex_m(tree: Path) -> None:
    sh("make", "-C", str(tree), "KALLOC_ARCH=armv7m")
    elf = tree / "build" / "app.elf"
    assert sh("arm-none-eabi-readelf", "-h", str(elf)).count("ARM") >= 1
    report = run_arm(elf)
    assert report["exit_code"] == 0 and report["isa"] == "armv7m"
    assert "sdk_project: ring sum=52 dma=yes" in report["uart"]
    kasan = ("KALLOC_ARCH=armv7m", "KASAN=1", "KALLOC_BUILD=build-kasan", "DEFS=-DAPP_OVERRUN")
    sh("make", "-C", str(tree), *kasan)
    bad = run_arm(tree / "build-kasan" / "app.elf", sanitize="kasan")
    first = next(e for e in bad["errors"] if e["severity"] == "error")
    assert first["kind"] == "out-of-bounds" and first["location"]["file"] == "src/util/label.c"


def test_pkg_config_flags_alone_build_a_cortex_m_program(tmp_path: Path) -> None:
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config not installed")
    src = tmp_path / "hello.c"
    lines = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "int main(void)",
        "{",
        "    char *p = malloc(8);",
        '    printf("%p", (void *)p);',
        "    free(p);",
        "    free(p);",
        "    return 0;",
        "}",
    ]
    src.write_text("\n".join(lines) + "\n")
    query = ["pkg-config", "--cflags", "--libs", "kalloc-armv7m"]
    pc_env = {**env(), "PKG_CONFIG_PATH": sdk("--pkg-config-dir")}
    flags = subprocess.run(query, capture_output=True, text=True, env=pc_env, check=True).stdout.split()
    sh("arm-none-eabi-gcc", "-O1", "-o", str(tmp_path / "hello.elf"), str(src), *flags, cwd=tmp_path)
    report = run_arm(tmp_path / "hello.elf")
    (err,) = [e for e in report["errors"] if e["kind"] == "double-free"]
    assert (err["symbol"], err["location"]["line"]) == ("main", 8)


def test_the_sdk_makefile_builds_an_app_for_cortex_m(tmp_path: Path) -> None:
    src = tmp_path / "app.c"
    src.write_text('#include <stdio.h>\nint main(void)\n{\n    puts("made for arm");\n    return 3;\n}\n')
    out = tmp_path / "app.elf"
    sh("make", "-C", sdk(), "ARCH=armv7m", f"APP={src}", f"OUT={out}")
    report = run_arm(out)
    assert report["uart"] == "made for arm\n" and report["exit_code"] == 3


def test_cmake_builds_the_project_for_cortex_m_and_ctest_runs_it_on_stm32f4(tree: Path) -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    prefix = sdk("--prefix")
    toolchain = f"-DCMAKE_TOOLCHAIN_FILE={prefix}/cmake/kalloc-toolchain.cmake"
    sh(
        "cmake",
        "-S",
        ".",
        "-B",
        "build",
        "-DKALLOC_ARCH=armv7m",
        toolchain,
        f"-DCMAKE_PREFIX_PATH={prefix}",
        cwd=tree,
    )
    sh("cmake", "--build", "build", cwd=tree)
    out = sh("ctest", "--test-dir", "build", cwd=tree)
    assert "100% tests passed, 0 tests failed out of 4" in out
    assert '"--board" "stm32f4"' in (tree / "build" / "CTestTestfile.cmake").read_text()  # the arch's board
    report = run_arm(tree / "build" / "app.elf")
    assert report["isa"] == "armv7m" and "sdk_project: ring sum=52 dma=yes" in report["uart"]
