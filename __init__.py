"""vidstore: a video feature store with lightweight heads, for telling real user-generated
videos from fake ones. The command is ``vidstore`` (vidstore.cli); the parts are
vidstore.extract, vidstore.store, vidstore.features, vidstore.heads and vidstore.configs."""

__version__ = "0.2.0"
