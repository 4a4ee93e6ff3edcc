#!/usr/bin/env python3
"""The name our users already type: ``python production_processor.py [run flags]`` is exactly
``xml-extractor run [run flags]`` (same flags, same exit codes)."""

import sys

from xml_extractor.__main__ import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "run", *sys.argv[1:]]
    main()
