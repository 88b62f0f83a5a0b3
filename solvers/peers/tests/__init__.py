"""Tests of the peer-library backends."""
