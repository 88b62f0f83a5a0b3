"""Tests of the array-style replica."""
