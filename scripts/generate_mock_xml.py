#!/usr/bin/env python3
"""Thin alias: ``python scripts/generate_mock_xml.py [flags]`` = ``xml-extractor generate-mock [flags]``."""

import sys

from xml_extractor.__main__ import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "generate-mock", *sys.argv[1:]]
    main()
