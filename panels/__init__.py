"""Sidebar panels and the shape list."""

from . import main

CLASSES = [*main.CLASSES]
