"""`kalloc run --probe` (issue 18): would these contiguous requests succeed at the end, at the worst moment?

firmware/tests/probe_fragment.c takes 64 KiB page blocks until the page allocator says no,
frees every other one (half the memory free, in 64 KiB holes), then frees the rest."""

from __future__ import annotations

from click.testing import CliRunner

from kalloc.cli import main

ELF = "firmware/build/tests/probe_fragment.elf"


def test_probe_fails_at_the_worst_moment_and_succeeds_at_the_end(cli_report):
    status, rep = cli_report(ELF, "--probe", "1MiB,64KiB@dma")
    assert status == 0
    big, small = rep["probes"]
    assert big["probe"] == "1MiB" and big["order"] == 8 and big["zone"] is None
    assert big["at_end"] == {"ok": True, "free_pages_cover_it": True, "largest_free_block": 4 << 20}
    assert big["worst"]["ok"] is False and big["worst"]["largest_free_block"] < 1 << 20
    cliff = big["cliff"]
    # the cliff is a free (every other block given back), with more than 1 MiB free in total
    assert cliff["what"] == "free" and cliff["size"] == 64 << 10 and cliff["free_bytes"] >= 1 << 20
    assert big["out_of_memory"]["what"] == "alloc" and big["out_of_memory"]["event"] < cliff["event"]
    assert small["zone"] == "DMA" and small["worst"]["ok"] is True and small["cliff"] is None


def test_the_text_report_says_it_and_no_probe_no_key(cli_report, tmp_path):
    r = CliRunner().invoke(main, ["run", ELF, "--probe", "1MiB", "-q"])
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if ln.startswith("probe 1MiB"))
    assert "at the end would succeed" in line and "would FAIL" in line
    assert "fragmentation cliff at event" in line
    assert r.output.rstrip().splitlines()[-1].startswith("summary:")
    _status, rep = cli_report(ELF)
    assert "probes" not in rep


def test_a_bad_probe_is_a_usage_error():
    r = CliRunner().invoke(main, ["run", ELF, "--probe", "1MiB@nowhere"])
    assert r.exit_code == 2 and "unknown zone" in r.output
