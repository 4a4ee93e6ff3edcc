"""The run: ProductionProcessor (selection, dispatch) and its long-lived worker processes."""
