"""Test package: gives top-level test modules unique names (tests.test_cli vs holonic/test_cli)."""
