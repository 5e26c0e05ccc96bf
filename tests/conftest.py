"""Our own suite uses the kalloc pytest plugin, installed or not.

An installed kalloc registers the plugin through its `pytest11` entry point; a plain
checkout (pythonpath = ".") loads it here. Loading it twice would be an error.
"""

from importlib.metadata import entry_points

_INSTALLED = any(ep.value == "kalloc_machine.tools.pytest_plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _INSTALLED else ["kalloc_machine.tools.pytest_plugin"]
