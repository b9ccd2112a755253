"""`runner smoke`: the real server plus a synthetic client per transport, with a CI report."""
