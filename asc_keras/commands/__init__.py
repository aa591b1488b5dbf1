"""The command-line tools that pip installs as console scripts (`asc-keras-train`, ...; see
pyproject.toml). `tools/<name>.py` runs the same `main`."""
