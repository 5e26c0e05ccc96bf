"""The report renderer: the JSON report (report/json_report.py) as text for a person, with rich.

Order: the firmware's UART output, then how the run ended, the errors (each with
where it happened and the backtrace), then the allocator's state in the formats
people know (zoneinfo, buddyinfo, slabinfo), interrupts and hypercall counts.

Invariants:
 1. Rendering reads the report dict only: what the text says, the JSON holds
    (wall time aside, which is text-only).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from kalloc_machine.isa import report_registers
from kalloc_machine.report import summary
from kalloc_machine.report.probes import render_probes
from kalloc_machine.report.symbols import format_frame
from kalloc_machine.report.tags import render_tags

_STATUS = {0: "clean", 64: "kalloc found an error", 65: "CPU fault", 66: "budget or timeout",
           130: "interrupted"}  # fmt: skip
_NO_EXIT = {"fault": "CPU fault", "panic": "firmware panic", "fatal": "a fatal error ended the run",
            "budget": "instruction budget exhausted", "timeout": "wall-clock limit reached",
            "wfi": "asleep in wfi with nothing to wake it", "interrupted": "interrupted by Ctrl-C",
            "break": "stopped at a breakpoint"}  # end -> why the firmware did not exit  # fmt: skip


def render_text(
    report: dict[str, Any], out: Console, *, wall_s: float | None = None, quiet: bool = False
) -> None:
    """Print `report` to `out`."""
    uart = report.get("uart", "")
    if uart:
        out.print(Text(uart.rstrip("\n")), soft_wrap=True)
    status = report["exit_code"]
    meaning = _STATUS.get(status, "firmware exit code")
    timing = f", {wall_s:.2f} s" if wall_s is not None else ""
    _header(f"kalloc report: {report['firmware']} on board {report['board']}", out)
    out.print(
        f"end: {report['end']} · {_firmware_state(report)} · "
        f"{report['instructions']:,} instructions{timing} · status {status} ({meaning})",
        markup=False,
    )
    _errors(report["errors"], out, judged=report["end"] == "exit", isa=report.get("isa"))
    _suppressed(report, out)
    _leak_summary(report, out)  # issue 13: definitely / indirectly lost, still reachable apart
    _suppressions(report, out)  # issue 13: --suppress
    render_probes(report, out)  # issue 18: --probe
    render_tags(report, out)  # issue 18: kalloc_tag_push, --budgets
    if not quiet:
        _state(report, out)
        for line in summary.poison_hint(report):
            out.print(Text(line, style="dim"))
    out.print(Text(summary.summary_line(report), style="bold"))  # always the last line (docs/abi.md)


def _header(title: str, out: Console) -> None:
    """A rule across a terminal; elsewhere a plain line, never padded to the width (report/console.py)."""
    if out.is_terminal:
        out.rule(title, style="dim")
    else:
        out.print(Text(f"── {title} ──", style="dim"))


def _state(report: dict[str, Any], out: Console) -> None:
    """The allocator's and the machine's state: zones, commit, buddyinfo, slabinfo, interrupts."""
    _zones(report, out)
    _commit(report, out)
    out.print(Text("\n/proc/buddyinfo", style="bold"))
    out.print(Text(report["buddyinfo"].rstrip("\n")), soft_wrap=True)
    out.print(Text("\n/proc/slabinfo (caches that held objects)", style="bold"))
    out.print(Text(_slabinfo_in_use(report["slabinfo"])), soft_wrap=True)
    _interrupts(report, out)


def _firmware_state(report: dict[str, Any]) -> str:
    """`firmware exit code N`, or why the firmware did not exit (the JSON's `firmware_exit_code` is null)."""
    code = report.get("firmware_exit_code")
    if code is not None:
        return f"firmware exit code {code}"
    return f"firmware did not exit ({_NO_EXIT.get(report['end'], report['end'])})"


def _errors(entries: list[dict[str, Any]], out: Console, *, judged: bool = True,
            isa: str | None = None) -> None:  # fmt: skip
    if not entries:  # leaks are judged only when the firmware exited by itself (session.py)
        out.print(Text("no errors, no leaks", style="green") if judged
                  else Text("no errors found before the run stopped; leaks not checked", style="yellow"))
        return
    errors = sum(1 for e in entries if e["severity"] == "error")
    repeats = sum(_repeats(e) for e in entries)
    in_all = f" ({len(entries) + repeats:,} reports in all, identical ones shown once)" if repeats else ""
    out.print(
        Text(
            f"{errors} error(s), {len(entries) - errors} warning(s){in_all}",
            style="bold red" if errors else "yellow",
        )
    )
    text = Text()  # one print for every entry: rich costs ~0.3 ms a call, and a report may hold 1,000
    shown = report_registers(isa)  # the ISA's short registers line
    for e in entries:
        style = "red" if e["severity"] == "error" else "yellow"
        times = f" ×{e['count']:,}" if _repeats(e) else ""  # identical errors: one entry, ×N
        text.append(f"\n{e['severity'].upper()} {e['kind']}{times}", style)
        text.append(f": {e['message']}\n")
        text.append("".join(line + "\n" for line in _entry_lines(e, shown)))
    text.rstrip()
    out.print(text, soft_wrap=True)  # long lines left to the terminal (and whole for grep)


def _entry_lines(e: dict[str, Any], shown_regs: tuple[str, ...] = ()) -> list[str]:
    """The lines under an error's headline: where, the access, backtraces, registers, repeats."""
    lines = []
    loc = e.get("location") or {}
    if e.get("pc") is not None:
        where = f" ({loc['file']}:{loc['line']})" if loc.get("file") else ""
        lines.append(f"  at {e['pc']:#010x} {e.get('symbol') or '??'}{where}")
    elif e.get("symbol") and loc.get("file"):  # no pc: a pytest test that called in (tools/harness.py)
        lines.append(f"  at {e['symbol']} ({loc['file']}:{loc['line']})")
    if e.get("instruction"):
        lines.append(f"  instruction: {e['instruction']}")
    if e.get("access"):
        lines.append(f"  access: {_access(e['access'])}")
    for frame in e.get("backtrace", [])[1:8]:
        lines.append(f"    called from {format_frame(frame)}")
    for key in ("alloc_site", "free_site", "caller_site"):
        site = e.get(key)
        if site:
            lines.append(f"  {key.replace('_', ' ')}: {format_frame(site['backtrace'][0])}")
    if e.get("interrupted"):  # an interrupt-context error: where the interrupt landed
        frames = e["interrupted"]["backtrace"]
        lines.append(f"  interrupted: {format_frame(frames[0])}")
        lines.extend(f"    called from {format_frame(frame)}" for frame in frames[1:4])
    if e.get("registers"):
        regs = e["registers"]
        lines.append("  registers: " + " ".join(
            f"{k}={regs[k]:#x}" for k in shown_regs if k in regs))  # fmt: skip
    if e.get("exception"):  # kind `internal`: kalloc's own traceback, innermost frame last
        exc = e["exception"]
        lines.append(f"  python exception: {exc['type']}: {exc['message']}")
        lines.extend(f"    in {f['module']}:{f['line']} {f['function']}()" for f in exc.get("frames", []))
    return lines


def _repeats(entry: dict[str, Any]) -> int:
    """How many times more the error of `entry` happened (its `count` - 1; a leak's count is objects)."""
    return summary.repeats(entry)


def _suppressed(report: dict[str, Any], out: Console) -> None:
    """The errors not kept past --max-errors (report/errorlog.py), by kind."""
    sup = report.get("suppressed")
    if not sup:
        return
    limit = report.get("options", {}).get("max_errors")
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in sup["by_kind"].items())
    cap = f"the limit of {limit:,} distinct errors (--max-errors)" if limit else "the errors limit"
    out.print(Text(f"\n… {sup['count']:,} more error(s) and warning(s) not shown: {cap} was reached "
                   f"({kinds})", style="bold"))  # fmt: skip


def _leak_summary(report: dict[str, Any], out: Console) -> None:
    """Valgrind's LEAK SUMMARY in one line, when there are leaks (report/leaks.py)."""
    leaks = report.get("leaks") or {}
    if not leaks.get("count"):
        return
    parts = [f"{key.replace('_', ' ')} {leaks[key]['bytes']:,} bytes in {leaks[key]['count']:,} object(s)"
             for key in ("definitely_lost", "indirectly_lost")
             if leaks.get(key, {}).get("count")]  # fmt: skip
    reach = leaks.get("still_reachable") or {}
    out.print(f"\nleak summary: {', '.join(parts)}; still reachable {reach.get('bytes', 0):,} bytes in "
              f"{reach.get('count', 0):,} object(s) (not errors)", markup=False)  # fmt: skip


def _suppressions(report: dict[str, Any], out: Console) -> None:
    """One line per --suppress file whose rules took errors (report/suppressions.py)."""
    sup = report.get("suppressions") or {}
    for name in dict.fromkeys(u["file"] for u in sup.get("used", [])):
        used = [u for u in sup["used"] if u["file"] == name]
        rules = ", ".join(f"rule {u['rule']}" + (f" ({u['reason']})" if u["reason"] else "")
                          + f" ×{u['count']:,}" for u in used)  # fmt: skip
        out.print(f"{sum(u['count'] for u in used):,} error(s) suppressed by {name} ({rules})", markup=False)


def _zones(report: dict[str, Any], out: Console) -> None:
    alloc = report.get("allocator", {})
    zones = alloc.get("zones", [])
    if not zones:
        return
    frag = alloc.get("fragmentation", {})
    table = Table(title="zones (pages of 4 KiB)", title_justify="left", show_edge=False)
    for col in ("zone", "managed", "free", "min", "low", "high", "lowest free", "largest free block"):
        table.add_column(col, justify="right")
    for z in zones:
        wm, pages = z.get("watermarks", {}), z.get("pages", {})
        largest = frag.get(z["name"], {}).get("largest_free_block", 0)
        table.add_row(
            z["name"],
            str(pages.get("managed", "")),
            str(pages.get("free", "")),
            str(wm.get("min", "")),
            str(wm.get("low", "")),
            str(wm.get("high", "")),
            str(z.get("min_free_seen", "")),
            f"{largest // 1024} KiB",
        )
    out.print()
    out.print(table)
    t = alloc.get("totals", {})
    if t:
        reserved = ", ".join(f"{k} {v // 1024} KiB" for k, v in t.get("reserved_bytes", {}).items())
        out.print(
            f"RAM {t['ram_bytes'] // 1024} KiB: free {t['free_bytes'] // 1024} KiB, "
            f"used {t['used_bytes'] // 1024} KiB (high water {t['high_water_used_bytes'] // 1024} KiB), "
            f"reserved: {reserved}",
            markup=False,
        )


def _commit(report: dict[str, Any], out: Console) -> None:
    """Committed memory per kind: now, high water, at the peak; then each zone's headroom."""
    c = report.get("commit")
    if not c:
        return
    table = Table(title="committed memory (KiB)",
                  title_justify="left", show_edge=False)  # fmt: skip
    for col in ("kind", "now", "high water", "at peak"):
        table.add_column(col, justify="right")
    now, hw, peak = c["bytes"], c["high_water_bytes"], c["at_peak_bytes"]
    for kind in now:
        if now[kind] or hw.get(kind):
            table.add_row(kind.replace("_", " "), str(now[kind] // 1024), str(hw.get(kind, 0) // 1024),
                          str(peak.get(kind, 0) // 1024))  # fmt: skip
    table.add_row("total", str(c["committed_bytes"] // 1024), "", str(c["peak_committed_bytes"] // 1024))
    out.print()
    out.print(table)
    close = ", ".join(f"{z['name']} lowest {z['lowest_free_pages']} pages vs min {z['min_watermark']} "
                      f"({'+' if z['headroom_pages'] >= 0 else ''}{z['headroom_pages']})"
                      for z in c.get("zones", []))  # fmt: skip
    out.print(f"closest to failing: {close}; allocation failures {c.get('allocation_failures', 0)}",
              markup=False)


def _slabinfo_in_use(text: str) -> str:
    """/proc/slabinfo without the caches that never held an object (the header kept)."""
    lines = text.rstrip("\n").splitlines()
    keep = [ln for ln in lines if ln.startswith(("slabinfo", "#")) or ln.split()[2:3] != ["0"]]
    return "\n".join(keep)


def _interrupts(report: dict[str, Any], out: Console) -> None:
    irq = report.get("interrupts", {})
    lines = irq.get("lines", {})
    ctx = irq.get("context_allocations", {})
    if _irq_dma_tables(report, out):
        pass
    elif lines or any(ctx.values()):
        shown = ", ".join(f"line {k}: {v}" for k, v in lines.items()) or "none"
        out.print(
            f"\ninterrupts: {shown}; from interrupt context: {ctx.get('allocs', 0)} allocations "
            f"({ctx.get('bytes', 0)} bytes), {ctx.get('frees', 0)} frees, {ctx.get('failures', 0)} failures",
            markup=False,
        )
    calls = report.get("hypercalls", {})
    if calls:
        out.print("hypercalls: " + ", ".join(f"{k} {v}" for k, v in calls.items()), markup=False)
    _fast_path(report, out)


def _fast_path(report: dict[str, Any], out: Console) -> None:
    """One line each for the per-CPU magazines and the fast path, when the run asked for them
    (a `--fastpath on` the mode could not serve says why, so it is never silently off)."""
    mags = report.get("percpu")
    if mags and "off" in mags:
        out.print(f"per-CPU magazines: not used: {mags['off']}", markup=False)
    elif mags:
        r, f = mags["refills"], mags["flushes"]
        out.print(f"per-CPU magazines: limit {mags['limit']}, batch {mags['batch']}; "
                  f"{r} refill{'s' * (r != 1)}, {f} flush{'es' * (f != 1)}", markup=False)  # fmt: skip
    fp = report.get("fastpath")
    if not fp:
        return
    if fp.get("on"):
        n, d = fp["served"], fp["drains"]
        text = f"fast path: {n} call{'s' * (n != 1)} served in firmware, {d} ring drain{'s' * (d != 1)}"
        if fp.get("corrupt"):
            text += f"; stopped: {fp['corrupt']}"
    else:
        text = f"fast path: not used: {fp.get('off', 'not served')}"
    out.print(text, markup=False)


def _irq_dma_tables(report: dict[str, Any], out: Console) -> bool:
    """Interrupts per line (what their handlers allocated), the lowest free-page level of
    each zone, and the DMA engine's transfers. False when the report has no per-line data."""
    irq = report.get("interrupts", {})
    per_line = irq.get("per_line")
    if per_line is None:
        return False
    names = {"0": "timer"}
    title = "interrupts (allocations made in the handlers)"
    table = Table(title=title, title_justify="left", show_edge=False)
    for col in ("line", "raised", "taken", "allocs", "bytes", "frees", "failures"):
        table.add_column(col, justify="right")
    for line, st in per_line.items():
        label = f"{line} ({names[line]})" if line in names else line
        cols = ("raised", "count", "allocs", "bytes", "frees", "failures")
        table.add_row(label, *(str(st[k]) for k in cols))
    out.print()
    if per_line:
        out.print(table)
    else:
        out.print("interrupts: none taken", markup=False)
    lowest = irq.get("lowest_free_pages", {})
    if lowest:
        shown = ", ".join(f"{z} {n}" for z, n in lowest.items())
        out.print(f"lowest free pages reached (zone: pages): {shown}", markup=False)
    injected = irq.get("injected")
    if injected:
        times = injected["times"]
        shown = ", ".join(str(t) for t in times[:8]) + (", ..." if len(times) > 8 else "")
        out.print(f"injected on line {injected['line']}: {len(times)} times ({shown})", markup=False)
    dma = report.get("dma")
    if dma and dma.get("transfers"):
        out.print(
            f"DMA: {dma['transfers']} transfers, {dma['completed']} completed ({dma['bytes']} bytes), "
            f"{dma['failed']} failed, {dma['errors']} DMA error report(s)",
            markup=False,
        )
    return True


def _access(acc: Any) -> str:
    """`{'type': 'read', 'addr': .., 'size': 4}` as "read of 4 bytes at 0x...", whatever keys it has."""
    if not isinstance(acc, dict):
        return str(acc)
    kind = acc.get("type") or acc.get("kind") or "access"
    size = acc.get("size")
    addr = acc.get("addr", acc.get("address"))
    text = f"{kind}" + (f" of {size} byte(s)" if size is not None else "")
    if isinstance(addr, int):
        text += f" at {addr:#010x}"
    rest = {k: v for k, v in acc.items() if k not in ("type", "kind", "size", "addr", "address")}
    return text + (f" {rest}" if rest else "")
