"""Tools over the machine: what tests, benchmarks and searches build on a Session.

    harness        Target: a firmware under test (run to a symbol, call, memory, snapshots)
    pytest_plugin  the pytest11 plugin (fixtures, --kalloc-* options, assertions)
    options        the run options defined once for kalloc run, kalloc explore and the plugin
    explore        the schedule search behind `kalloc explore`
    fwreplay       a board's RAM banks, and trace replay through firmware (`kalloc replay --firmware`)
    bench          the performance figures behind `kalloc bench`

The commands themselves live in kalloc.cli; nothing here imports it.
"""
