"""The mapping contract: JSON Schema validation, cross-checks and compilation."""
