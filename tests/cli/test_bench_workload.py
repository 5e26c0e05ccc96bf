"""The allocation-heavy workload of `kalloc bench` (firmware/bench/, tools/benchchurn.py) at tiny sizes.

No timing is asserted (docs/performance.md): the three builds run clean, each allocator is the one
it claims to be (kalloc's hypercalls, the TLSF in the firmware, picolibc's nano-malloc), TLSF stays
O(1) in firmware instructions, and `SDK_MALLOC=0` is what lets an application define its own malloc.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from kalloc_machine.elf import load_firmware
from kalloc_machine.sdk import prebuilt, sdk_dir
from kalloc_machine.session import RunOptions, Session
from kalloc_machine.tools.benchchurn import CHURNS, COMPARISONS, Churn, run_churn
from kalloc_machine.tools.benchkit import poke

from kalloc.cli import main


def counts(churn: Churn, iters: int) -> dict[str, int]:
    session = Session(RunOptions(firmware=str(prebuilt(churn.elf)), sanitize=churn.sanitize))
    poke(session, "churn_iters", iters)
    outcome = session.run()
    assert outcome.exit_status == 0, outcome.report["errors"]
    return outcome.report["hypercalls"]


def test_kalloc_build_serves_every_malloc_and_free_by_hypercall():
    calls = counts(CHURNS["kalloc"], 100)
    assert calls.get("MALLOC") == 512 + 100 and calls.get("FREE") == 100 + 512


@pytest.mark.parametrize("name", ["tlsf", "picolibc"])
def test_other_allocators_take_one_pool_and_no_malloc_hypercall(name):
    calls = counts(CHURNS[name], 100)
    assert "MALLOC" not in calls and "FREE" not in calls
    assert calls.get("ALLOC_PAGES_EXACT") == 1


def test_each_build_links_the_malloc_it_names():
    def symbols(name: str) -> set[str]:
        fw = load_firmware(prebuilt(f"bench/churn_{name}"))
        return {s for s in ("malloc", "__malloc_malloc", "sbrk", "kmalloc") if fw.symbol_addr(s) is not None}

    assert "__malloc_malloc" not in symbols("kalloc")  # the SDK's wrapper
    assert "__malloc_malloc" not in symbols("tlsf") and "sbrk" not in symbols("tlsf")
    assert {"__malloc_malloc", "sbrk"} <= symbols("picolibc")  # picolibc's nano-malloc, our sbrk


def test_tlsf_costs_the_same_instructions_per_operation_at_any_length():
    lo, hi, longer = (run_churn(CHURNS["tlsf"], n, "default")[1] for n in (100, 600, 3100))
    short_rate, long_rate = (hi - lo) / 500, (longer - hi) / 2500
    assert 100 < short_rate < 600 and abs(long_rate - short_rate) < 0.25 * short_rate  # O(1), ~370 a pair


def test_bench_workload_quick_produces_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--quick", "--only", "workload", "--json", str(out)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]}
    assert set(figures) == {c.name for c in COMPARISONS}
    for f in figures.values():
        assert f["value"] is not None and f["value"] > 0 and f["target"], f


@pytest.mark.skipif(shutil.which("riscv64-unknown-elf-gcc") is None, reason="no cross toolchain")
def test_sdk_malloc_0_lets_an_application_define_malloc(tmp_path):
    app = tmp_path / "app.c"
    app.write_text(
        "#include <stddef.h>\n"
        "static char pool[4096]; static size_t used;\n"
        "void *malloc(size_t n) { void *p = pool + used; used += (n + 7) & ~7u; return p; }\n"
        "void free(void *p) { (void)p; }\n"
        "int main(void) { char *p = malloc(10); p[0] = 1; free(p); return p == (char *)pool ? 0 : 1; }\n"
    )

    def build(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = ["make", "-C", str(sdk_dir()), f"APP={app}", f"OUT={tmp_path / 'app.elf'}", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    plain = build()
    assert plain.returncode != 0 and "multiple definition of `malloc'" in plain.stderr
    own = build("SDK_MALLOC=0")
    assert own.returncode == 0, own.stderr[-2000:]
    outcome = Session(RunOptions(firmware=str(tmp_path / "app.elf"))).run()
    assert outcome.exit_status == 0 and "MALLOC" not in outcome.report["hypercalls"]
    assert not (Path(sdk_dir()) / "build" / "nomalloc").exists()  # the shipped tree is untouched


def test_bench_hooks_quick_produces_its_figures(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--quick", "--only", "hooks", "--json", str(out)],
                             catch_exceptions=False)  # fmt: skip
    assert res.exit_code == 0, res.output
    names = [f["name"] for f in json.loads(out.read_text())["figures"]]
    assert any("translation (TLB-fill hook) on / off" in n for n in names)
    assert any("stack guard hook on / off" in n for n in names)
