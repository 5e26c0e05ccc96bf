"""`kalloc sdk` as pkg-config: the queries, kalloc.pc / kalloc-kasan.pc, and the prebuilt
SDK libraries `make -C "$(kalloc sdk)" APP=...` now links.

The build tests need the cross toolchain (skipped without it); pkg-config ones need
pkg-config. CI installs both (.ci/run).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile
from kalloc_machine.sdk import sdk_dir
from kalloc_machine.session import RunOptions, Session

from kalloc.cli import main

APPS = Path(__file__).resolve().parents[1] / "data" / "apps"
GCC = "riscv64-unknown-elf-gcc"
needs_gcc = pytest.mark.skipif(shutil.which(GCC) is None, reason="cross toolchain not installed")
needs_pkg_config = pytest.mark.skipif(shutil.which("pkg-config") is None, reason="pkg-config not installed")


def sdk(*args: str) -> str:
    res = CliRunner().invoke(main, ["sdk", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output.strip()


def symbols(elf: Path) -> set[str]:
    with elf.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        return {s.name for s in symtab.iter_symbols()}


def test_no_query_prints_the_sdk_directory_as_before():
    assert sdk() == str(sdk_dir())
    assert sdk("--kasan") == str(sdk_dir())


def test_path_queries_name_existing_files():
    prefix = Path(sdk("--prefix"))
    assert prefix == sdk_dir()
    assert (Path(sdk("--include-dir")) / "kalloc.h").is_file()
    assert Path(sdk("--linker-script")).name == "link.ld" and Path(sdk("--linker-script")).is_file()
    assert (Path(sdk("--pkg-config-dir")) / "kalloc.pc").is_file()
    assert (Path(sdk("--pkg-config-dir")) / "kalloc-kasan.pc").is_file()
    assert (prefix / "kalloc.mk").is_file()
    for answer in (sdk("--include-dir"), sdk("--linker-script"), sdk("--libs")):
        assert ".." not in answer  # normalized absolute paths


def test_flag_queries_carry_what_the_sdk_needs():
    cflags = sdk("--cflags").split()
    needed = ("-march=rv32imac", "-mabi=ilp32", "-fno-omit-frame-pointer", "-fno-optimize-sibling-calls")
    for flag in (*needed, "-g"):
        assert flag in cflags
    assert f"-I{sdk_dir() / 'include'}" in cflags
    ldflags = sdk("--ldflags").split()
    assert "-nostartfiles" in ldflags and ldflags[ldflags.index("-T") + 1] == sdk("--linker-script")
    libs = sdk("--libs").split()
    lib = str(sdk_dir() / "build" / "libkalloc_sdk.a")
    assert libs == ["-Wl,--whole-archive", lib, "-Wl,--no-whole-archive"]
    assert Path(libs[1]).is_file()


def test_kasan_variant_instruments_the_code_and_links_the_kasan_library():
    assert "-fsanitize=kernel-address" in sdk("--kasan", "--cflags").split()
    assert "-fsanitize=kernel-address" not in sdk("--cflags").split()
    assert sdk("--kasan", "--libs").split()[1] == str(sdk_dir() / "build" / "libkalloc_sdk_kasan.a")
    assert sdk("--kasan", "--ldflags") == sdk("--ldflags")


def test_several_queries_answer_on_one_line_in_a_fixed_order():
    assert sdk("--libs", "--cflags") == f"{sdk('--cflags')} {sdk('--libs')}"


def test_arch_rv32imac_is_the_default():
    assert sdk("--arch", "rv32imac", "--cflags") == sdk("--cflags")


def test_unknown_arch_is_one_line_and_status_2():
    res = CliRunner().invoke(main, ["sdk", "--arch", "aarch64", "--cflags"])
    assert res.exit_code == 2
    line = "kalloc: error: --arch aarch64: unknown target (known: rv32imac, armv7m)"
    assert res.output.strip().splitlines() == [line]


def _normalized(flags: str) -> list[str]:
    """pkg-config prints ${pcfiledir}/.. paths as they are; kalloc sdk normalizes them."""
    out = []
    for word in flags.split():
        for prefix in ("-I", "--specs=", ""):
            if word.startswith(prefix) and word[len(prefix):].startswith("/"):
                word = prefix + os.path.normpath(word[len(prefix):])
                break
        out.append(word)
    return out


@needs_pkg_config
@pytest.mark.parametrize("kasan", [False, True], ids=["plain", "kasan"])
def test_pkg_config_agrees_with_kalloc_sdk(kasan):
    name = "kalloc-kasan" if kasan else "kalloc"
    env = {**os.environ, "PKG_CONFIG_PATH": sdk("--pkg-config-dir")}
    variant = ["--kasan"] if kasan else []

    def pc(*args: str) -> str:
        return subprocess.run(["pkg-config", *args, name], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    assert _normalized(pc("--cflags")) == _normalized(sdk(*variant, "--cflags"))
    assert _normalized(pc("--libs")) == _normalized(sdk(*variant, "--ldflags", "--libs"))
    assert os.path.normpath(pc("--variable=linker_script")) == sdk("--linker-script")
    assert os.path.normpath(pc("--variable=prefix")) == sdk("--prefix")


# -- building with the flags --------------------------------------------------------------------


def _run(elf: Path, sanitize: str = "poison"):
    return Session(RunOptions(firmware=str(elf), sanitize=sanitize)).run()


@needs_gcc
@pytest.mark.parametrize("kasan", [False, True], ids=["plain", "kasan"])
def test_one_gcc_command_with_all_the_flags_builds_a_working_elf(tmp_path, kasan):
    """Compile and link in one command: the flags name their specs file twice, which must work."""
    src = tmp_path / "linked_list.c"
    shutil.copy(APPS / src.name, src)
    variant = ["--kasan"] if kasan else []
    flags = shlex.split(sdk(*variant, "--cflags", "--ldflags", "--libs"))
    elf = tmp_path / "app.elf"
    cmd = [GCC, *flags, "-O2", str(src), "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert ("__asan_load4_noabort" in symbols(elf)) is kasan  # the machine's sign of a KASAN build
    out = _run(elf, "kasan" if kasan else "poison")
    assert out.exit_status == 0, out.report["errors"]
    assert "out of tree: sum=45" in out.report["uart"]
    assert out.report["hypercalls"]["MALLOC"] == 11  # the SDK's malloc won over picolibc's


@needs_gcc
@needs_pkg_config
def test_pkg_config_cflags_and_libs_in_one_command_build_a_working_elf(tmp_path):
    src = tmp_path / "linked_list.c"
    shutil.copy(APPS / src.name, src)
    env = {**os.environ, "PKG_CONFIG_PATH": sdk("--pkg-config-dir")}
    cmd = f'{GCC} $(pkg-config --cflags kalloc) -O2 {src} -o {tmp_path}/app.elf $(pkg-config --libs kalloc)'
    subprocess.run(["sh", "-c", cmd], env=env, check=True, capture_output=True, timeout=300)
    out = _run(tmp_path / "app.elf")
    assert out.exit_status == 0 and "out of tree: sum=45" in out.report["uart"]


# -- make -C "$(kalloc sdk)" APP=...: the prebuilt library ------------------------------------


def _app_build(tmp_path: Path, *args: str) -> Path:
    src = tmp_path / "linked_list.c"
    shutil.copy(APPS / src.name, src)
    out = tmp_path / "app.elf"
    subprocess.run(["make", "-s", "-C", str(sdk_dir()), f"APP={src}", f"OUT={out}", *args],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return out


@needs_gcc
@pytest.mark.parametrize("kasan", [False, True], ids=["plain", "kasan"])
def test_app_build_compiles_only_the_app_and_links_the_prebuilt_library(tmp_path, kasan):
    elf = _app_build(tmp_path, *(["KASAN=1"] if kasan else []))
    objs = sorted(p.relative_to(tmp_path / "app.build" / "obj").as_posix()
                  for p in (tmp_path / "app.build").rglob("*.o"))  # fmt: skip
    assert objs == ["app/linked_list.o"]  # none of the SDK's 13 files was compiled
    assert ("__asan_load4_noabort" in symbols(elf)) is kasan
    out = _run(elf, "kasan" if kasan else "poison")
    assert out.exit_status == 0 and "out of tree: sum=45" in out.report["uart"]


@needs_gcc
@pytest.mark.parametrize("kasan", [False, True], ids=["plain", "kasan"])
def test_prebuilt_library_links_byte_identical_to_an_sdk_built_from_source(tmp_path, kasan):
    variant = ["KASAN=1"] if kasan else []
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    prebuilt = _app_build(tmp_path / "a", *variant)
    source = _app_build(tmp_path / "b", "SDK=source", *variant)
    assert any((tmp_path / "b" / "app.build" / "obj" / "sdk").rglob("*.o"))  # it did compile the SDK
    # the same bytes but for the application's own directory name (mapped to ".")
    assert prebuilt.read_bytes() == source.read_bytes()


def test_pc_files_carry_the_package_version():
    from importlib.metadata import version

    from kalloc_machine.sdk import pkg_config_dir, read_pc

    for name in ("kalloc", "kalloc-kasan"):
        _variables, fields = read_pc(pkg_config_dir() / f"{name}.pc")
        assert fields["Name"] == name
        assert fields["Version"] == version("kalloc")
