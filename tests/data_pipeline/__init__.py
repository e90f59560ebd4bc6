"""Tests of the pre-training data pipeline (gemmaforge.data); a package so its conftest is not `conftest`."""
