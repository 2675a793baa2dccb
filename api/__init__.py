"""StoreFlow api."""
