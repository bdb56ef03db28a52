"""Tests that run the core inside Pyodide under Node.js."""
