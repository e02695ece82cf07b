"""The built-in heads, one file each; heads/registry.py imports every module here."""
