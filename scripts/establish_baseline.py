#!/usr/bin/env python3
"""Thin alias: ``python scripts/establish_baseline.py [flags]`` = ``xml-extractor bench [flags]``."""

import sys

from xml_extractor.__main__ import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "bench", *sys.argv[1:]]
    main()
