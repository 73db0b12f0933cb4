"""Settings read from the environment, and URL helpers: the bottom of every import."""
