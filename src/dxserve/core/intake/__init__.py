"""Intake: turning what a user sends (files, bytes) into frames a model can read."""
