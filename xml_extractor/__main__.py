"""``python -m xml_extractor`` = ``xml-extractor``."""
from .cli import main

main()
