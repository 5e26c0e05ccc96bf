"""Checks over the source tree itself (layers, private names, sizes): pure Python, read with `ast`.

Nothing here imports kalloc or the machine; these tests take well under a second.
"""
