"""Lab-only faults: they reach into a server's internals, which production never exposes."""
