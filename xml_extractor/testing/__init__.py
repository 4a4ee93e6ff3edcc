"""Test-only machinery: the fault-injection gate, the fault plan of the write path, hold points,
synthetic operator-scale data. The product reaches it only through xml_extractor.hooks, behind the
gate; the test suite and scripts/ (soak, ops_bench) import it directly."""
