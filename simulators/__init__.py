"""StoreFlow simulators."""
