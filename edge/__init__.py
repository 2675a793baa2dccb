"""StoreFlow edge."""
