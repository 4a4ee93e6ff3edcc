"""The ``xml-extractor`` command line: a thin layer over the library.

The group lives here and every command is registered explicitly from its module (``contract``,
``setup``, ``run``, ``launch``, ``operate``, ``bench``, ``profile``); the modules import only ``common``, never this package,
so there is no import cycle and ``from xml_extractor.cli import cli`` always holds every command.
``python -m xml_extractor`` is the one module entry point.

Every option also reads an ``XML_EXTRACTOR_*`` environment variable (shown in --help). Exit codes:
0 done, 1 some applications failed (or an inconsistency was found), 2 usage or configuration
error, 3 stopped on an error it could not recover from, 130 interrupted.
"""

from __future__ import annotations

import click

from .. import __version__, supervision
from . import bench, contract, launch, operate, preflight, profile, report, run, setup
from .common import show_envvars


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="xml-extractor")
def cli() -> None:
    """Turn XML documents stored in a database table into rows of a normalized schema."""


for command in (
    contract.validate_contract,
    contract.map_cmd,
    setup.init_db_cmd,
    setup.load_xml_cmd,
    setup.generate_mock_cmd,
    run.run_cmd,
    launch.launch_cmd,
    operate.status_cmd,
    operate.failures_cmd,
    operate.reprocess_cmd,
    operate.reconcile_cmd,
    operate.quality_cmd,
    bench.bench_cmd,
    profile.profile_cmd,
    preflight.preflight_cmd,
    report.report_cmd,
):
    cli.add_command(command)
show_envvars(cli)  # every option: its environment variable, shown in --help


def main() -> None:
    """The command line, called by the entry point (xml_extractor.__main__.main, which held the
    stop signals while this package imported: supervision.take_held_stop_signals takes them here,
    once the handlers are in place). Every stop signal (supervision.stop_signals: a service stop or
    a closed terminal on POSIX, Ctrl-Break on Windows) interrupts a command as Ctrl-C does (exit 130:
    common.handle_errors) from here on, not only once a run has installed its own handlers
    (processing/processor.py): a stop sent while a command prepares (reprocess recording its
    requests, a run connecting) ends it with 130, not 143 or -15. A signal the process was started
    ignoring (``nohup``: the hang-up) stays ignored. An instance started by ``launch`` watches its
    standard input as its lifeline to the launcher (supervision.watch_stdin_lifeline)."""
    try:  # a stop held while starting (launch's instances), or a stop line already waiting on
        # the lifeline, interrupts here; one that comes while the handlers are being set too
        supervision.obey_the_launcher()
        supervision.interrupt_on_stop_signals()
        supervision.take_held_stop_signals()
        supervision.watch_stdin_lifeline()
        outcome = cli.main(prog_name="xml-extractor", standalone_mode=False)
    except click.ClickException as exc:  # a bad flag: click's message and exit code (2)
        supervision.exit_decided()
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, click.Abort):
        # Ctrl-C or a stop signal before a command took over (start-up, click parsing the flags,
        # where click's own handling would print "Aborted!" and exit 1): 130, as inside a command
        # (common.handle_errors)
        supervision.exit_decided()
        click.echo("error: interrupted", err=True)
        raise SystemExit(130) from None
    finally:
        # the command is over and its exit code decided: a stop that comes while the interpreter
        # shuts down (its threads joined, atexit, then Python's handlers reset to the default)
        # would only change it to -15 or print a traceback, so the stop signals are ignored now
        supervision.exit_decided()
        supervision.ignore_stop_signals()
        supervision.forget_interrupts_that_left_exec()
    # standalone_mode=False returns what click.exceptions.Exit carried (--help, --version: 0)
    raise SystemExit(outcome if isinstance(outcome, int) else 0)


__all__ = ["cli", "main"]
