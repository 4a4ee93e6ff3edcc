"""Packaged contracts (credit_card is the default)."""
