"""Operator commands beside ``sinker run``: each builds on the data-path modules and returns values;
sinker.py turns them into terminal output and exit codes."""
