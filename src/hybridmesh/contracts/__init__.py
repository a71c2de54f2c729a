"""Pact V4 contracts between the services of a hybrid system."""
