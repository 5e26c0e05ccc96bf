"""`kalloc sdk`: where the firmware SDK is, and the flags a build system needs to use it.

With no query it prints the SDK directory, as it always has (`make -C "$(kalloc sdk)"`).
The queries answer as pkg-config does (`kalloc sdk --cflags`, `--libs`...): several
queries print their answers on one line, in a fixed order, separated by spaces.
"""

from __future__ import annotations

import click

from kalloc.cli.options import fail

# (option, help), in the order the answers are printed.
_QUERIES = (
    ("prefix", "the SDK directory (holds kalloc.mk, link.ld, include/, build/, cmake/)"),
    ("include-dir", "the directory of kalloc.h"),
    ("linker-script", "the linker script (link.ld)"),
    ("pkg-config-dir", "the directory of kalloc.pc and kalloc-kasan.pc, for PKG_CONFIG_PATH"),
    ("cflags", "compiler flags for your code: arch, frame pointers, no sibling calls, -g, -I"),
    ("ldflags", "linker flags: arch, -nostartfiles, the linker script, --gc-sections"),
    ("libs", "the SDK library, linked whole (after your objects and libraries)"),
)


def _query_options(fn):  # type: ignore[no-untyped-def]
    for name, help_text in reversed(_QUERIES):
        fn = click.option(f"--{name}", name.replace("-", "_"), is_flag=True, help=help_text)(fn)
    return fn


@click.command("sdk")
@click.option("--arch", default=None, metavar="ARCH",
              help="the target: rv32imac (default) or armv7m (Cortex-M4, board stm32f4)")  # fmt: skip
@click.option("--kasan", is_flag=True, help="the compiled-KASAN variant: your code instrumented, the SDK not")
@_query_options
def sdk_cmd(arch: str | None, kasan: bool, **queries: bool) -> None:
    """Print the firmware SDK directory, or the flags to build against it.

    `make -C "$(kalloc sdk)" APP=... OUT=...` builds one program; `kalloc sdk --cflags`,
    `--ldflags`, `--libs` (with `--kasan` for the KASAN variant) feed your own build.
    """
    from kalloc_machine.sdk import ARCHES, build_flags, pkg_config_dir, sdk_dir

    if arch is not None and arch not in ARCHES:
        fail(f"--arch {arch}: unknown target (known: {', '.join(ARCHES)})", status=2)
    if not any(queries.values()):
        click.echo(str(sdk_dir()))
        return
    flags = build_flags(arch or ARCHES[0], kasan)
    answers = {
        "prefix": str(flags.prefix),
        "include_dir": str(flags.include_dir),
        "linker_script": str(flags.linker_script),
        "pkg_config_dir": str(pkg_config_dir()),
        "cflags": flags.cflags,
        "ldflags": flags.ldflags,
        "libs": flags.libs,
    }
    keys = [name.replace("-", "_") for name, _ in _QUERIES]
    click.echo(" ".join(answers[key] for key in keys if queries[key]))
