"""Plugins: one package per capability. Each imports flowstone and its own optional dependency."""
