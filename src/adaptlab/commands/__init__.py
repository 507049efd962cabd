"""CLI command modules: parse options, call the library, render with rich. No logic of their own."""
