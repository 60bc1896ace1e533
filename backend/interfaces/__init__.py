"""The ways in: the command line, the worker process that serves Blender and its JSON Lines
protocol. Everything here calls ``backend.api``; nothing below imports it."""
