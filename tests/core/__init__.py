"""Tests of the core machine."""
