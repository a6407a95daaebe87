"""Broker boundary: the Broker protocol and its alpaca-py implementation."""
