"""``python -m xml_extractor`` = ``xml-extractor``: the one module entry point."""
from .cli import main

main()
