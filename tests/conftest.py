"""Shared fixtures: the fake Anthropic server and real, cheap resources."""

pytest_plugins = ["tests.fakes.fixtures"]
