"""StoreFlow analytics."""
