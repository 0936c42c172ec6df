"""A codebus extension: a changelog of the changes CI records."""
