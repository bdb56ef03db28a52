"""Tests of the rpc transport layer: driver, transports and wire codec."""
