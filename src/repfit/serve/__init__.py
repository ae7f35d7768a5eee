"""The ops workbench (``repfit serve``): a FastAPI app over the suggestions, with a SQLite store of decisions."""
