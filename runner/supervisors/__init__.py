"""What runs the server: `reload` restarts it when the code changes (dev); `workers` keeps a pool
of per-session worker processes."""
