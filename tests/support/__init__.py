"""Test doubles shared by several test files."""
