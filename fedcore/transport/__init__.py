"""Drivers that carry fedcore's messages over a network."""
