"""The run's report: the JSON a program reads and the text a person reads.

    json_report.py  the JSON report: one entry per error (`error_entry`), its canonical text
                    (`dumps`); the top-level dict is assembled by Session.build_report
    render.py       the report renderer: the JSON report as text (`render_text`, rich)
    symbols.py      PCs and stack-depot handles as frames (`Symbolizer`), allocator wrappers
    interrupts.py   the interrupt and DMA sections, both backtraces of an interrupt-context error
    errorlog.py     the run's error log (Machine.errors): identical errors once with a count,
                    distinct ones capped by --max-errors, the rest counted as suppressed
    summary.py      the text report's last line (`summary: ...`) and poison mode's `note:` lines
    console.py      the Console every front end prints on: rich on a terminal, one line per
                    fact when piped; --color/--no-color, NO_COLOR, FORCE_COLOR
    leaks.py        leak errors from the exit scan, one per (site, definitely / indirectly
                    lost), and the `leaks` section (still reachable apart)
    suppressions.py --suppress FILE: TOML rules that keep known third-party errors out of
                    the report and the exit status (`suppressions` key)
"""
