"""Tests of the command line and the docs: `kalloc …` through click's runner, and every
command and snippet the docs show. Some run the emulated machine (`kalloc run`)."""
