"""``python -m xml_extractor`` = ``xml-extractor``: the one module entry point. The guard keeps a
spawned worker (Windows, or any spawn start) from running the command line again on import."""

from .cli import main

if __name__ == "__main__":
    main()
