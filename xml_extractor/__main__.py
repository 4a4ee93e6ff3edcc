"""``python -m xml_extractor`` = ``xml-extractor``: the one entry point of the command line (the
console script calls :func:`main` too). The guard keeps a spawned worker (Windows, or any spawn
start) from running the command line again on import."""

from .starting import hold_stop_signals


def main() -> None:
    """Hold the stop signals (xml_extractor.starting), then import and run the command line."""
    hold_stop_signals()
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
