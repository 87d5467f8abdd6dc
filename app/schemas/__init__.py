"""Pydantic models of what clients send (validated) and what the API answers (documented)."""
