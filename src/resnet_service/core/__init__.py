"""The basics every layer uses: settings, errors, metrics, logs, traces, the version."""
