"""Classifiers: the Classifier protocol and its implementations."""
