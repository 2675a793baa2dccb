"""StoreFlow shared package: settings, the data contract (layout, values, wire format), database access
and the ``storeflow`` command line."""

__version__ = "0.1.0"
