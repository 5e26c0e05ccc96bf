"""A CMake project builds against the SDK's CMake package and runs its firmware through CTest.

tests/data/sdk_project (sources in subdirectories, a private include directory, its own
static library, the APP_OVERRUN define) configured with the SDK's toolchain file and
`find_package(kalloc CONFIG)`: kalloc::sdk and kalloc::sdk_kasan link the prebuilt
libraries, and `kalloc_add_test` makes `ctest` run each ELF with `kalloc run`, kalloc's
exit status deciding the test. Needs cmake and the cross toolchain (skipped without).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kalloc_machine.sdk import sdk_dir
from kalloc_machine.session import RunOptions, Session

PROJECT = Path(__file__).resolve().parents[1] / "data" / "sdk_project"
BIN = Path(sys.executable).parent  # where `kalloc` is installed with this Python

pytestmark = [
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
    pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="no cross toolchain"),
    pytest.mark.skipif(not (BIN / "kalloc").exists(), reason="the kalloc command is not installed"),
]


def sh(*cmd: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("cmake") / "sdk_project"
    shutil.copytree(PROJECT, tree)
    prefix = sdk_dir()
    sh("cmake", "-S", ".", "-B", "build", f"-DCMAKE_TOOLCHAIN_FILE={prefix}/cmake/kalloc-toolchain.cmake",
       f"-DCMAKE_PREFIX_PATH={prefix}", cwd=tree)  # fmt: skip
    sh("cmake", "--build", "build", cwd=tree)
    return tree


def test_ctest_runs_the_firmware_with_kalloc_exit_codes_as_results(built):
    out = sh("ctest", "--test-dir", "build", cwd=built).stdout
    assert "100% tests passed, 0 tests failed out of 4" in out
    for name in ("runs_clean", "kasan_runs_clean", "overrun_found", "kasan_overrun_found"):
        assert f" {name} " in out


def test_the_elfs_are_the_sdk_variants_they_link(built):
    plain = Session(RunOptions(firmware=str(built / "build" / "app.elf"))).run()
    assert plain.exit_status == 0 and "sdk_project: ring sum=52" in plain.report["uart"]
    elf = built / "build" / "app_kasan_overrun.elf"
    kasan = Session(RunOptions(firmware=str(elf), sanitize="kasan")).run()
    first = kasan.report["errors"][0]
    assert first["kind"] == "out-of-bounds" and first["symbol"] == "label_make"
    # at the store, in the project-relative path
    assert first["location"] == {"file": "src/util/label.c", "line": 17}
    assert str(built).encode() not in (built / "build" / "app.elf").read_bytes()


def test_the_cmake_package_carries_the_flags_kalloc_sdk_prints(built):
    from click.testing import CliRunner

    from kalloc.cli import main

    def sdk(*args: str) -> list[str]:
        return CliRunner().invoke(main, ["sdk", *args], catch_exceptions=False).output.split()

    compile_flags = (built / "build" / "CMakeFiles" / "app_kasan.dir" / "flags.make").read_text()
    for flag in sdk("--kasan", "--cflags"):
        if flag.startswith("-I"):  # an imported target's include directory is a system one
            assert f"-isystem {flag[2:]}" in compile_flags
        else:
            assert flag in compile_flags
    link = (built / "build" / "CMakeFiles" / "app_kasan.dir" / "link.txt").read_text()
    for flag in sdk("--ldflags"):
        assert flag in link
    assert " ".join(sdk("--kasan", "--libs")) in link  # whole, after the objects and libring.a
    assert link.index("libring.a") < link.index("-Wl,--whole-archive")


def test_a_bug_in_a_clean_test_fails_ctest(built):
    sh("cmake", "-S", ".", "-B", "build", "-DAPP_BUG=ON", cwd=built)
    try:
        sh("cmake", "--build", "build", cwd=built)
        proc = sh("ctest", "--test-dir", "build", "--output-on-failure", cwd=built, ok=False)
        assert proc.returncode != 0
        assert "75% tests passed, 1 tests failed out of 4" in proc.stdout
        assert "runs_clean (Failed)" in proc.stdout
        assert "kalloc exit status 64, expected 0" in proc.stdout + proc.stderr
    finally:
        sh("cmake", "-S", ".", "-B", "build", "-DAPP_BUG=OFF", cwd=built)
        sh("cmake", "--build", "build", cwd=built)
