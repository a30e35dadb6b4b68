"""Alembic migrations of the gateway database (run through `flightdeck.serving.db.upgrade`).

A package so setuptools ships it with flightdeck; Alembic itself reads it by path.
"""
