"""The user guide's pytest section works on a user's own firmware, not only on ours.

Builds the section's `app.c` out of tree, in a temporary directory, with the section's
own `make -C "$(kalloc sdk)" ...` command, then runs the section's Python examples (all
its ```python blocks, in order, as one test_app.py) against it with pytester: under the
default sanitizer and under --kalloc-sanitize=kasan. The report lines and the
missing-function line the section quotes (its ```text blocks) must be the real ones: the
second from a build without TESTABLE (EXTRA_CFLAGS=-DTESTABLE=), as the section says.
Skipped without the cross toolchain (CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.skipif(
    shutil.which("riscv64-unknown-elf-gcc") is None, reason="cross toolchain not installed"
)

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[str]:
    text = GUIDE.read_text()
    start = text.index("## Testing firmware with pytest\n")
    end = text.index("\n## ", start + 1)
    return [body for kind, body in FENCE.findall(text[start:end]) if kind == lang]


def _build(where: Path, extra: str = "") -> Path:
    """The section's build command, run as a user would, in `where` (next to app.c)."""
    [command] = [b.strip() for b in _blocks("sh") if "make -C" in b]
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    subprocess.run(["bash", "-c", command + extra], cwd=where, env=env, check=True, capture_output=True,
                   timeout=300)  # fmt: skip
    return where / "build" / "app.elf"


@pytest.fixture(scope="module")
def apps(tmp_path_factory) -> dict[str, Path]:
    """build/app.elf from the section's app.c: as documented, and without TESTABLE."""
    [source] = _blocks("c")
    out = {}
    for name, extra in (("app", ""), ("plain", " EXTRA_CFLAGS=-DTESTABLE=")):
        where = tmp_path_factory.mktemp(name)
        (where / "app.c").write_text(source)
        out[name] = _build(where, extra)
    return out


# A conftest for the suite: prints the text report of one test's Target (the section quotes it).
SHOW = """
    import pytest

    @pytest.fixture
    def kalloc_target(kalloc_target, request):
        made = []

        def make(*args, **kw):
            made.append(kalloc_target(*args, **kw))
            return made[-1]

        yield make
        if made and request.node.name == "test_a_leak_names_the_test_line":
            print("KALLOC TEXT\\n" + made[0].text())
"""


def _suite(pytester, elf: Path, *args: str):
    (pytester.path / "build").mkdir()
    shutil.copy(elf, pytester.path / "build" / "app.elf")
    pytester.makepyfile(test_app="\n\n".join(_blocks("python")))
    pytester.makeconftest(textwrap.dedent(SHOW))
    loaded = pytester.parseconfig().pluginmanager.has_plugin("kalloc")
    plugin = [] if loaded else ["-p", "kalloc_machine.tools.pytest_plugin"]
    return pytester.runpytest_inprocess(*plugin, "-p", "no:cacheprovider", *args)


def _examples() -> int:
    return sum(block.count("\ndef test_") + block.startswith("def test_") for block in _blocks("python"))


@pytest.mark.parametrize("mode", ["poison", "kasan"])
def test_every_example_passes_on_a_users_own_firmware(pytester, apps, mode):
    result = _suite(pytester, apps["app"], "--kalloc-sanitize", mode)
    assert _examples() >= 4
    result.assert_outcomes(passed=_examples())


def test_the_quoted_report_lines_are_the_real_ones(pytester, apps):
    [quoted] = [b for b in _blocks("text") if "called from" in b]
    result = _suite(pytester, apps["app"], "-s", "-k", "leak_names")
    result.assert_outcomes(passed=1)
    lines = [re.sub(r"0x[0-9a-f]+", "0x*", line.strip()) for line in quoted.splitlines() if line.strip()]
    result.stdout.fnmatch_lines(["*" + line for line in lines], consecutive=True)


def test_the_quoted_missing_function_line_is_the_real_one(pytester, apps):
    [quoted] = [b.strip() for b in _blocks("text") if "call('" in b]
    result = _suite(pytester, apps["plain"], "-k", "call_into")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([quoted.replace("[", "[[]").replace("*", "[*]")])
    assert "Traceback" not in result.stdout.str()
