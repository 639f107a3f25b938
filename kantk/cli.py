"""The ``kantk`` command line.

``kantk fit|validate|test --config configs/<name>.yaml`` hands over to Lightning's
``LightningCLI`` (any key can be overridden on the command line, ``--print_config`` prints the
merged config). Every other command is an entry of :data:`COMMANDS`; later commands (prune,
symbolic, export, plot) are added there.

Errors: every command ends bad input with one line ``kantk: <what went wrong>`` on stderr, exit
status 2 for usage errors (a malformed or out-of-range argument, found while parsing) and 1 for
everything else, never a Python traceback. Errors that are not kantk's own messages nor the usual
classes of bad input (``ValueError``, ``OSError``) are reported the same way but marked
``internal error``; with the environment variable ``KANTK_DEBUG=1`` every error is raised with
its traceback instead.

Files: no command overwrites one of its inputs or a file it did not create in the same run. The
Lightning commands save the merged config as ``config.yaml`` in the trainer's log folder (a new
``version_N`` folder with a logger, ``trainer.default_root_dir`` itself without one); when that
file already exists (an earlier run's, or the ``--config`` file itself) the command stops with one
line before training. So it does when a logger's folder holds that logger's ``metrics.csv`` or
``hparams.yaml`` (:func:`logger_file_problem`): Lightning's CSVLogger would delete the first.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import kantk
from kantk.cli_models import (
    check_input_file,
    checkpoint_error,
    one_line,
    same_file,
    unreadable_checkpoint,
    usage_exit,
)

#: Environment variable: set to 1 to see the traceback of any error instead of one line.
DEBUG_ENV = "KANTK_DEBUG"
#: ``--ckpt_path`` values that Lightning resolves itself (not files).
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "null", "none")

#: LightningCLI's parser settings: a misspelt key is refused with the closest name, never taken
#: for the key it begins (argparse's abbreviations ran ``--trainer.max_step 5`` as ``max_steps``).
LIGHTNING_PARSER: dict[str, Any] = {"prog": "kantk", "allow_abbrev": False}

#: Subcommands run by LightningCLI, with their one-line help.
LIGHTNING_COMMANDS: dict[str, str] = {
    "fit": "train a KAN from a YAML config: kantk fit --config configs/toy.yaml",
    "validate": "evaluate a KAN on the validation split (LightningCLI validate)",
    "test": "evaluate a KAN on the test split (LightningCLI test)",
}


@dataclass(frozen=True)
class Command:
    """A plain (non-Lightning) subcommand.

    Attributes:
        help: One line for ``kantk --help``.
        configure: Adds the command's arguments to its ``argparse`` sub-parser.
        run: Runs it with the parsed arguments; returns the exit status.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _plugins_run(args: argparse.Namespace) -> int:
    registry = kantk.default_registry()
    for kind, table in (
        ("bases", registry.bases),
        ("regularisers", registry.regularisers),
        ("pruners", registry.pruners),
        ("symbolic libraries", registry.symbolic_libraries),
        ("node operations", registry.node_operations),
    ):
        names = ", ".join(f"{n} ({table.owner(n)})" for n in table.names()) or "(none)"
        print(f"{kind}: {names}")
    for failed in registry.failed_plugins:  # a plugin still registered only had a record dropped
        loaded = registry.plugin_manager.get_plugin(failed.name) is not None
        what = "loaded without a record" if loaded else "failed to load"
        print(f"{what}: {failed.name} from {failed.package}: {failed.error}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Command] = {
    "plugins": Command(
        "list the registered bases, regularisers, pruners, symbolic libraries and node operations",
        lambda parser: None,
        _plugins_run,
    ),
}


def _model_commands() -> None:
    from kantk.cli_models import commands

    for name, (help_text, configure, run) in commands().items():
        COMMANDS.setdefault(name, Command(help_text, configure, run))


_model_commands()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with kantk's error line: ``kantk: <command>: <problem> (see 'kantk <command> --help')``,
    and no abbreviated options (``--versio`` was ``--version``; the Lightning commands refuse them
    too, :data:`LIGHTNING_PARSER`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        usage_exit(self.prog.removeprefix("kantk").strip(), message)


def _closest_option(parser: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """``"; did you mean --samples?"`` for the first unknown option close to one of ``parser``'s
    (a misspelt ``--sampels`` got no hint), else ``""``."""
    import difflib

    known = [name for name in parser._option_string_actions if name.startswith("--")]
    for arg in extra:
        if arg.startswith("--"):
            given = arg.partition("=")[0]
            close = difflib.get_close_matches(given, known, n=1, cutoff=0.75)
            # an abbreviation (--lib), which argparse is not allowed to take: the one option it begins
            close = close or [name for name in known if name.startswith(given)]
            if len(close) == 1:
                return f"; did you mean {close[0]}?"
    return ""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--version``, the plain commands, and the Lightning ones (for help)."""
    parser = ArgumentParser(prog="kantk", description="Kolmogorov-Arnold Network toolkit")
    parser.add_argument("--version", action="version", version=f"kantk {kantk.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)  # parsed by LightningCLI instead
    commands = {}
    for name, command in COMMANDS.items():
        commands[name] = sub.add_parser(name, help=command.help)
        command.configure(commands[name])
    parser.set_defaults(_command_parsers=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kantk`` console command.

    Args:
        argv: The arguments after ``kantk``; ``None`` reads ``sys.argv``.

    Returns:
        The exit status of a command that ran to its end (0, or 1 when it found no result).

    Raises:
        SystemExit: On bad input: ``SystemExit("kantk: ...")`` (Python prints the line to stderr
            and exits with status 1), or ``SystemExit(2)`` after printing a usage error; also
            ``--help`` and ``--version`` (status 0). Any other exception only with ``KANTK_DEBUG=1``.
    """
    from kantk._warnings import IN_COMMAND

    token = IN_COMMAND.set(True)
    try:
        with warnings.catch_warnings(), _terminated_on_sigterm(argv):
            _show_warnings_as_lines()
            return _main(argv)
    except SystemExit as exc:
        if _debug() and exc.__context__ is not None and exc.code not in (0, None):
            # a refusal raised while handling an error ("kantk: cannot load ..."): its traceback
            import traceback

            traceback.print_exception(exc.__context__, file=sys.stderr)
        raise
    except BrokenPipeError as exc:
        if not _stdout_closed():  # another pipe (a worker's, a socket): an error as any other
            if _debug():
                raise
            raise SystemExit(describe_error(exc)) from None
        # the reader of stdout left (kantk plugins | head -1): quietly, as Unix tools
        if argv is None:  # the console: nothing more is written to stdout by this process
            _quiet_stdout()
        raise SystemExit(128 + 13) from None  # SIGPIPE's status
    except KeyboardInterrupt:
        if _debug():
            raise
        print("kantk: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except argparse.ArgumentError as exc:  # LightningCLI's (jsonargparse's) parse errors
        if _debug():
            raise
        command = next((a for a in (argv or sys.argv[1:]) if a in LIGHTNING_COMMANDS), "")
        message = lightning_parse_error(str(exc))
        print(f"kantk: {command}: {message} (see 'kantk {command} --help')", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # the one place that turns any error into one line
        if _debug():
            raise
        raise SystemExit(describe_error(exc)) from None
    finally:
        IN_COMMAND.reset(token)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (poll says POLLERR on its write end);
    False where that cannot be told (no poll, no file descriptor: a test's capture)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _quiet_stdout() -> None:
    """Point stdout at the null device: Python's flush at exit would write to the closed pipe
    again ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush there
        pass


#: The exit status of a command ended by SIGTERM (``timeout``, a CI job's cancellation, ``kill``).
SIGTERM_STATUS = 128 + 15


@contextlib.contextmanager
def _terminated_on_sigterm(argv: Sequence[str] | None) -> Iterator[None]:
    """A model command ended by SIGTERM unwinds as an interrupted one does, so that its temporary
    files go (they stayed: ``.kantk-tmp-*/out.csv`` half written) and what it replaces stays as it
    was: ``kantk: terminated``, status 143. Not for the Lightning commands (Lightning has its own
    handling of the signal), nor outside the main thread (where no handler can be set)."""
    import signal
    import threading

    words = list(sys.argv[1:] if argv is None else argv)
    lightning = bool(words) and words[0] in LIGHTNING_COMMANDS
    if lightning or threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        try:
            os.write(2, b"kantk: terminated\n")  # not print: the signal may land inside a write
        except OSError:
            pass
        raise SystemExit(SIGTERM_STATUS)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _show_warnings_as_lines() -> None:
    """kantk's warnings shown by :func:`_show_warning`, and Lightning's torch deprecation not at all
    (as in kantk.fit); the caller restores the warnings' state (or is a process that ends)."""
    from kantk._warnings import LIGHTNING_TREESPEC_WARNING

    warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
    warnings.filterwarnings("ignore", message=LIGHTNING_TREESPEC_WARNING)


def _show_warning(
    shown_before: Any, message: Warning | str, category: type[Warning], filename: str, lineno: int, *rest: Any
) -> None:
    """kantk's own warnings as one ``kantk: warning: ...`` line on stderr, like its errors (Python
    prints the file, the line number and the source line under it); others as before."""
    if os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep) or str(message).startswith("kantk: "):
        text = one_line(str(message)).removeprefix("kantk: ")  # "kantk: warning: kantk: training stopped"
        print(f"kantk: warning: {text}", file=sys.stderr)
    else:
        shown_before(message, category, filename, lineno, *rest)


def describe_error(exc: BaseException) -> str:
    """The one ``kantk: ...`` line for an exception that ended a command.

    kantk's own errors and the usual classes of bad input (``ValueError``, ``OSError``, Lightning's
    configuration errors) print their message; anything else is marked as an internal error.
    A class that LightningCLI could not build (jsonargparse's "Does not validate against any of
    the Union subtypes" with the config namespace) is reported by the constructor's own error,
    after the class path: ``kantk: kantk.lightning.CSVDataModule: no CSV file at 'x.csv'``.
    """
    refused = _refused_class(exc)
    if refused is not None:
        where, inner = refused
        where = f"{where}: " if where else ""
        if isinstance(inner, str):
            return f"kantk: {where}{one_line(inner)}"
        line = describe_error(inner)
        if _expected(inner):
            return line.replace("kantk: ", f"kantk: {where}", 1)
        return line.replace("kantk: internal error: ", f"kantk: internal error: {where}", 1)
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        message = f"{exc.strerror}: {exc.filename!r}"
        if exc.filename2 is not None:
            message += f" -> {exc.filename2!r}"
        if isinstance(exc, FileExistsError) and os.path.isfile(os.fspath(exc.filename)):
            # a folder was to be made there (--trainer.default_root_dir naming a file)
            message += " is a file where a folder was to be made; give a folder (or a new name)"
    elif isinstance(exc, pickle.UnpicklingError):  # torch.load(weights_only=True) of a bad checkpoint
        message = checkpoint_error(exc)
    elif _out_of_memory(exc):
        message = (
            f"out of memory ({one_line(str(exc), 200)}): the model or data asked for is larger than "
            "this machine holds; check widths, basis_kwargs (grid_size, degree, num_centers), "
            "train_num, batch sizes and --samples"
        )
    elif _in_torch_load(exc):  # a broken file reaches many errors inside torch.load
        message = f"cannot load a checkpoint: {unreadable_checkpoint(exc)}"
    else:
        message = str(exc) or type(exc).__name__
    if _expected(exc):
        return "kantk: " + one_line(message)
    plugin = _raising_plugin(exc)
    if plugin is not None:  # a plugin basis's forward that raised: not kantk's bug
        return (
            f"kantk: plugin {plugin} raised {type(exc).__name__}: {one_line(message, 500)} (an error "
            f"in the plugin's code; run with {DEBUG_ENV}=1 to see the traceback)"
        )
    return (
        f"kantk: internal error: {type(exc).__name__}: {one_line(message, 500)} "
        f"(run with {DEBUG_ENV}=1 to see the traceback)"
    )


def _raising_plugin(exc: BaseException) -> str | None:
    """``'name' (package)`` of the third-party plugin whose code is the innermost of ``exc``'s
    traceback frames in any plugin's package (a basis's ``forward`` raising, say), else ``None``.
    Regularisers and pruners are named by :func:`kantk.plugins.plugin_call` already; a basis's
    hot path is not wrapped, so its errors are traced back here."""
    import types

    from kantk import registry

    built = registry._default  # never built here: that would import every installed plugin
    if built is None:
        return None
    manager = built.plugin_manager
    packages: dict[str, str] = {}
    for name, package in getattr(manager, "isolated_plugins", {}).items():
        plugin = manager.get_plugin(name)
        # a module, or a class or instance registered from one (a class's __name__ is its own)
        module = (
            plugin.__name__ if isinstance(plugin, types.ModuleType) else getattr(plugin, "__module__", None)
        )
        if module is None:
            module = type(plugin).__module__
        if isinstance(module, str) and module.split(".")[0] != "kantk":
            packages[module.split(".")[0]] = f"{name!r}" + (f" ({package})" if package else "")
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    for module in reversed(frames):
        if isinstance(module, str) and module.split(".")[0] in packages:
            return packages[module.split(".")[0]]
    return None


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation that failed (torch's CPU allocator, or CUDA's)."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def _expected(exc: BaseException) -> bool:
    """Whether ``exc`` reports bad input rather than a bug."""
    if isinstance(exc, (ValueError, OSError, pickle.UnpicklingError)) or _out_of_memory(exc):
        return True
    if _in_torch_load(exc):
        return True
    kind = type(exc)
    if kind.__module__.split(".")[0] == "kantk" or kind.__name__ == "MisconfigurationException":
        return True
    return isinstance(exc, RuntimeError) and _raised_in(exc, _LIGHTNING_CALLBACKS)


#: Modules of Lightning's callbacks: the RuntimeErrors they raise themselves report how a callback
#: is configured (``EarlyStopping(monitor=...)`` naming a metric that is not logged, a
#: ``GradientAccumulationScheduler`` that does not fit the run), not a bug.
_LIGHTNING_CALLBACKS = ("pytorch_lightning.callbacks.", "lightning.pytorch.callbacks.")


#: ``torch.load``'s modules and functions: what they raise reads a file (a ``--ckpt_path``
#: checkpoint that LightningCLI opens itself), e.g. a KeyError from a text file, not a bug.
_TORCH_LOAD = {"torch.serialization": ("load", "_load", "_legacy_load"), "torch._weights_only_unpickler": ()}


def _in_torch_load(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside ``torch.load`` (its loading functions or the weights-only
    unpickler; ``torch.save`` lives in the same module and is not meant)."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module in _TORCH_LOAD and (not _TORCH_LOAD[module] or frame.f_code.co_name in _TORCH_LOAD[module]):
            return True
        tb = tb.tb_next
    return False


def _raised_in(exc: BaseException, prefixes: tuple[str, ...]) -> bool:
    """Whether the frame that raised ``exc`` (the innermost of its traceback) is in a module whose
    name starts with one of ``prefixes``."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return isinstance(module, str) and module.startswith(prefixes)


#: The first line of jsonargparse's error for a value that none of a Union's types accepts.
_UNION_ERROR = "Does not validate against any of the Union subtypes"
_NONE_ITEM = "Expected a <class 'NoneType'>"


def _union_items(text: str) -> tuple[str, list[str], str] | None:
    """Split jsonargparse's Union error in ``text``: (the text before it, the error of each Union
    type, the given value), or ``None`` when ``text`` holds none. Each error is as its exception
    printed it (the indentation jsonargparse added removed)."""
    start = text.find(_UNION_ERROR)
    if start < 0:
        return None
    line_start = text.rfind("\n", 0, start) + 1
    indent = start - line_start
    lines = [line[indent:] for line in text[line_start:].splitlines()]
    try:
        first = lines.index("Errors:") + 1
    except ValueError:
        return None
    items: list[str] = []
    given = ""
    for line in lines[first:]:
        if line.startswith("  - "):
            items.append(line[4:])
        elif line.startswith("    ") and items:
            items[-1] += "\n" + line[4:]
        elif line.startswith("Given value: "):
            given = line.removeprefix("Given value: ")
            break
        elif not line.startswith("Given value type: "):
            break
    return text[:line_start], items, given


def _union_item(items: list[str]) -> str | None:
    """The error among a Union's that says what is wrong: the first that is not a plain type
    mismatch (``Expected a <class 'list'>``), else the first that is not NoneType's."""
    useful = [item for item in items if not item.startswith(_NONE_ITEM)]
    specific = [item for item in useful if not item.startswith("Expected a <class")]
    return next(iter(specific or useful), None)


def _without_unions(text: str) -> str:
    """``text`` with each jsonargparse Union error replaced by the error of the type that was meant."""
    for _ in range(20):  # Unions nest (a list of callbacks, each a class path)
        split = _union_items(text)
        if split is None:
            break
        before, items, given = split
        item = _union_item(items)
        if item is None:
            break
        if item.startswith("Expected a") and "Got value" not in item and 0 < len(given) <= 100:
            item += f". Got value: {given}"  # jsonargparse took the value out of each type's error
        text = before + item
    return text


def lightning_parse_error(message: str) -> str:
    """LightningCLI's (jsonargparse's) parse error ``message`` as one line.

    A value none of a Union's types accepts (the data module, a callback: a class path and its
    arguments) gives the error of the class that was meant, not jsonargparse's list of every
    type's error and the value; an option the class does not take lists those it takes::

        data: kantk.lightning.FunctionDataModule: Option 'train_nums' is not accepted; accepted
        options: f, n_vars, ranges, ...
    """
    text = _without_unions(message)
    text = re.sub(r'Parser key "([^"]+)":\s*', r"\1: ", text)
    text = re.sub(r"Problem with given class_path '([^']+)':\s*", r"\1: ", text)
    text = one_line(text)
    unknown = re.search(r"([\w.]+): Option '([^']+)' is not accepted$", text)
    if unknown is not None:
        accepted = _class_options(unknown.group(1))
        if accepted:
            text += _suggestion(unknown.group(2), accepted) + "; accepted options: " + ", ".join(accepted)
    section = re.search(r"does not accept option '(model|trainer)\.(\w+)'$", text) or re.search(
        r"unrecognized arguments: --(model|trainer)\.(\w+)\b", text
    )
    if section is not None:  # a misspelt key of the model: or trainer: section, in a config or
        # on the command line (the first unrecognized argument)
        cls = _SECTION_CLASSES[section.group(1)]
        if section.group(1) == "trainer":  # the Lightning package that runs (importing the other
            # one would set up its loggers on whatever sys.stderr is at that moment)
            cls = next((f"{p}.Trainer" for p in _LIGHTNING_PACKAGES if p in sys.modules), "")
        accepted = [name for name in _class_options(cls) if name not in _HIDDEN_OPTIONS]
        if accepted:
            hint = _suggestion(section.group(2), accepted)
            if section.group(0).startswith("unrecognized"):  # as an option: --model.widths
                hint = re.sub(r"'(\w+)'", rf"--{section.group(1)}.\1", hint)
            text += hint
            if section.group(1) == "model":  # the trainer's list is long: its --help has it
                text += f"; accepted {section.group(1)} options: " + ", ".join(accepted)
    return one_line(text)


#: The class whose options a config section takes, for the hint on a misspelt key.
_SECTION_CLASSES = {"model": "kantk.lightning.KANModule", "trainer": "pytorch_lightning.Trainer"}
_LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")

#: Constructor arguments that are not config keys (LightningCLI fills them in).
_HIDDEN_OPTIONS = ("self", "args", "kwargs")


def _suggestion(name: str, accepted: Sequence[str]) -> str:
    """``"; did you mean 'widths'?"`` for a misspelt option, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.7)
    return f"; did you mean {close[0]!r}?" if close else ""


def _class_options(class_path: str) -> list[str]:
    """The ``init_args`` that jsonargparse accepts for ``class_path`` (empty when unknown)."""
    import importlib
    import inspect

    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except Exception:  # only a hint: the error itself is printed without it
        return []
    try:
        from jsonargparse._parameter_resolvers import get_signature_parameters

        return [p.name for p in get_signature_parameters(cls, None)]
    except Exception:  # another jsonargparse: the constructor's named parameters
        try:
            parameters = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            return []
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in parameters if p.kind in named]


def _refused_class(exc: BaseException) -> tuple[str, BaseException | str] | None:
    """For jsonargparse's Union error raised when LightningCLI builds a class (the data module, the
    callbacks): (where: the class path, or ``""`` for a list of classes; the exception of the
    constructor, or its message when the exception is not at hand); else ``None``."""
    if not isinstance(exc, ValueError) or not str(exc).startswith(_UNION_ERROR):
        return None
    split = _union_items(str(exc))
    item = None if split is None else _union_item(split[1])
    if split is None or item is None:
        return None
    found = re.match(r"(?:Namespace\(class_path=|\{'class_path': )'([^']+)'", split[2])
    where = found.group(1) if found else ""
    cause = exc.__cause__
    for _ in range(20):
        if cause is None:
            break
        if str(cause) == item:
            return where, cause
        cause = cause.__cause__
    return where, lightning_parse_error(item)


def _main(argv: Sequence[str] | None) -> int:
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        if any(a in ("-h", "--help") for a in argv[1:]):
            print(lightning_help(argv[0]))  # without loading Lightning (docs/cli.md)
            return 0
        if "--help-all" in argv[1:]:  # LightningCLI's full help (loads Lightning: seconds)
            argv = [("--help" if a == "--help-all" else a) for a in argv]
            from_console = False
        check_lightning_arguments(argv)
        # From the console LightningCLI reads sys.argv itself (it warns when given both).
        cli = run_lightning_cli(
            None if from_console else argv, parser_kwargs={**LIGHTNING_PARSER, "exit_on_error": False}
        )
        summary = _summary(argv[0], cli)
        if summary:
            print(summary)
        close_process_group()
        return 0
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # told by the command's parser, so the message names the command and its --help
        command_parser = args._command_parsers.get(args.command, parser)
        command_parser.error(
            f"unrecognized arguments: {' '.join(extra)}{_closest_option(command_parser, extra)}"
        )
    if args.command in COMMANDS:
        return COMMANDS[args.command].run(args)
    parser.print_help(sys.stderr)  # no command is a usage error (an empty $CMD in a script "succeeded")
    return 2


def lightning_help(command: str) -> str:
    """The short help of ``kantk fit|validate|test``, written without importing Lightning.

    LightningCLI builds its help from the signatures of the Trainer, the model and every data
    module, which means importing Lightning and torch (seconds). ``--help-all`` prints that full
    help; this one names the options most runs need.
    """
    return f"""usage: kantk {command} --config CONFIG.yaml [--KEY VALUE ...]

{LIGHTNING_COMMANDS[command]}

Runs Lightning's LightningCLI over kantk.lightning.KANModule and a LightningDataModule.

options:
  -h, --help            this short help (fast: Lightning is not loaded)
  --help-all            LightningCLI's full help: every Trainer, model and data option
                        (loads Lightning and torch, a few seconds)
  --config CONFIG.yaml  a YAML config (model:, data:, trainer: sections); see configs/
  --print_config        print the merged config and exit
  --model.KEY VALUE     any KANModule argument, e.g. --model.widths '[2, 5, 1]'
  --data.KEY VALUE      any argument of the data module, e.g. --data.batch_size 64
  --trainer.KEY VALUE   any Trainer argument, e.g. --trainer.max_epochs 20
  --ckpt_path PATH      a checkpoint to resume or evaluate (or last, best)
  --seed_everything S   the seed of the run

Every key of the config can be given on the command line (later values win).
See docs/commands/fit.md and docs/cli.md."""


def _is_registry(path: str) -> bool:
    """Whether Lightning reads ``path`` from its model registry: ``registry`` or ``registry:...``
    (any case), and only with ``litmodels`` installed; otherwise it is a file path, checked as one
    (a FIFO named ``registry_x.ckpt``, or ``registry`` without litmodels, blocked the command)."""
    import importlib.util

    text = path.lower()
    named = text == "registry" or text.startswith("registry:")
    return named and importlib.util.find_spec("litmodels") is not None


def _local_checkpoint(text: str, what: str) -> str | None:
    """The local file a ``ckpt_path`` names (``~`` expanded), once it is a readable regular file;
    ``None`` for a name Lightning resolves itself (``last``, ``best``, its registry). A URL, which
    Lightning would read (a remote one unpickled by default), or anything else ends the command
    (``what`` names the option: ``--ckpt_path`` or a config's ``ckpt_path``)."""
    from kantk.cli_models import fail

    if text.strip().lower() in LIGHTNING_CKPT_NAMES or _is_registry(text):
        return None
    text = os.path.expanduser(text)
    if "://" in text:
        fail(
            f"{what} {text!r} is a URL; kantk resumes only from a local checkpoint file (or last, "
            "best): download it first"
        )
    return check_input_file(text, f"checkpoint file for {what}")  # a FIFO would block


def check_lightning_arguments(argv: Sequence[str]) -> None:
    """Check what LightningCLI would only notice after building the model and the trainer.

    ``--ckpt_path FILE`` must be a readable file (Lightning's own names such as ``last`` or
    ``best`` pass); a ``--config`` file UTF-8 text of a bounded size.
    """
    _check_config_files(argv[0] if argv else "fit", argv)
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name != "--ckpt_path":
            continue
        if not sep:
            if i + 1 >= len(argv):
                continue  # LightningCLI reports the missing value
            value = argv[i + 1]
        local = _local_checkpoint(value, "--ckpt_path")  # --ckpt_path=~/x.ckpt: no shell expands it
        if local is None:
            continue
        from kantk.cli_models import fail, lightning_checkpoint_problem, read_checkpoint

        # LightningCLI reads it first, and a broken file raised anything
        problem = lightning_checkpoint_problem(read_checkpoint(local))
        if problem:
            fail(f"cannot load checkpoint {local!r}: {problem}")


def _summary(command: str, cli: Any) -> str:
    """One closing line: the step reached, the final evaluation metrics and where the logs are."""
    trainer = getattr(cli, "trainer", None)
    if trainer is None:
        return ""
    where = trainer.log_dir or trainer.default_root_dir  # log_dir is a collective under DDP: every rank
    if getattr(trainer, "global_rank", 0) != 0:
        return ""  # under DDP every rank runs this; rank zero speaks for them (metrics are reduced)
    metrics = {
        k: float(v)
        for k, v in sorted(trainer.callback_metrics.items())
        if k.startswith(("val_", "test_")) and getattr(v, "numel", lambda: 1)() == 1
    }
    # the step of a fit; validate/test said "step 0" whatever checkpoint they evaluated, and a
    # ddp_spawn fit's main process does not learn its workers' step
    spawned = getattr(trainer.strategy, "_start_method", None) in ("spawn", "fork", "forkserver")
    parts = [f"step {trainer.global_step}"] if command == "fit" and not spawned else []
    parts += [f"{k} {v:.3e}" for k, v in metrics.items()]
    return f"kantk {command}: " + (", ".join(parts) or "done") + (f" (logs in {where})" if where else "")


def close_process_group() -> None:
    """End an initialised ``torch.distributed`` group on every rank together: a barrier, then destroy.

    PyTorch asks programs to destroy their group before they exit; Lightning does so only for NCCL.
    A gloo group left to the interpreter's shutdown (its store and connection threads still
    running) aborted ``kantk fit`` once in CI, after a DDP run that had finished: ``terminate called
    without an active exception``, status -6. Without an initialised group this does nothing.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_lightning_cli(argv: Sequence[str] | None, **cli_kwargs: Any) -> Any:
    """Run ``LightningCLI`` over :class:`kantk.lightning.KANModule` and any LightningDataModule.

    The CLI of the unified ``lightning`` package (with :mod:`kantk.lightning.unified`) runs when
    the arguments or the config name ``lightning.pytorch`` class paths, ``pytorch_lightning``'s
    otherwise (:func:`cli_package`); class paths of either spelling are accepted.

    Args:
        argv: Starting with the subcommand, e.g. ``["fit", "--config", "configs/toy.yaml"]``;
            ``None`` reads ``sys.argv``.
        **cli_kwargs: Passed to ``LightningCLI`` (e.g. ``run=False`` in tests).

    Returns:
        The ``LightningCLI`` object (its ``trainer`` and ``model`` hold the results).
    """
    import importlib

    from kantk.lightning.compat import kantk_classes

    package = cli_package(sys.argv[1:] if argv is None else argv)
    try:
        LightningDataModule = importlib.import_module(package).LightningDataModule
        importlib.import_module(package + ".cli")
    except ImportError as exc:  # jsonargparse comes with the 'cli' extra
        raise SystemExit(
            f"kantk: the Lightning commands need the CLI extra: pip install 'kantk[cli]' ({exc})"
        ) from None
    KANModule = kantk_classes(package).KANModule

    settings: dict[str, Any] = {
        "subclass_mode_data": True,
        "auto_configure_optimizers": False,  # KANModule configures its own optimizer
        # the merged config never replaces a file: an input, or an earlier run's (issue 16)
        "save_config_callback": save_config_callback_class(package),
        "save_config_kwargs": {"overwrite": False},
        "parser_kwargs": dict(LIGHTNING_PARSER),
        "args": None if argv is None else list(argv),
    }
    settings.update(cli_kwargs)
    refuse_yaml_aliases()
    with class_paths_for(package), config_imports_limited():
        return cli_class(package)(KANModule, LightningDataModule, **settings)


#: Environment variable naming more packages whose classes and functions a Lightning config may
#: name (comma-separated top-level names, e.g. ``my_project``): a config is input, and naming a
#: module imports it (its top-level code runs) and a function's path makes it callable.
CONFIG_MODULES_ENV = "KANTK_CONFIG_MODULES"
#: Packages whose classes a ``kantk fit|validate|test`` config may name without
#: :data:`CONFIG_MODULES_ENV` (functions: kantk's only).
CONFIG_CLASS_PACKAGES = ("kantk", "pytorch_lightning", "lightning", "lightning_fabric")


#: The oldest jsonargparse whose ``import_object`` tells a config's import paths from its own
#: (``check_path``), which :func:`config_imports_limited` needs; pyproject's ``cli`` extra asks for it.
MIN_JSONARGPARSE = "4.53"


class ConfigImportError(ValueError):
    """A Lightning config names a module, class or function kantk does not import for a config."""


def config_import_problem(name: str, obj: Any = None) -> str | None:
    """Why a config may not name ``name`` (``obj``: what it names, once imported), or None.

    Classes of :data:`CONFIG_CLASS_PACKAGES` and of the packages in :data:`CONFIG_MODULES_ENV`
    are allowed; functions and other objects only from ``kantk`` and those packages (a
    ``LambdaCallback`` with ``on_fit_start: builtins.print`` called print, and ``this.s`` imported
    a module, whose top-level code ran, before any check).
    """
    import inspect

    extra = tuple(m.strip() for m in os.environ.get(CONFIG_MODULES_ENV, "").split(",") if m.strip())
    top = name.split(".", 1)[0]
    own = ("kantk", *extra)
    classes = (*CONFIG_CLASS_PACKAGES, *extra)
    # the hint names a package of the user's, never the standard library's (os, subprocess)
    package = "<package>" if top in sys.stdlib_module_names or top in CONFIG_CLASS_PACKAGES else top
    hint = f"to allow a package of your own, set {CONFIG_MODULES_ENV}={package}"
    if top not in classes:
        return (
            f"the config names {name!r}; a config may name classes of {', '.join(classes)} only (naming a "
            f"module imports it and runs its code); {hint}"
        )
    if obj is None:
        return None
    # where the object itself comes from: kantk.cli.os.system is os's function, not kantk's
    home = (obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)) or ""
    home_top = home.split(".", 1)[0]
    if inspect.isclass(obj) or inspect.ismodule(obj):
        if home_top not in classes:
            return (
                f"the config names {name!r}, which is {home or 'unknown'}'s; a config may name classes of "
                f"{', '.join(classes)} only; {hint}"
            )
    elif top not in own or home_top not in own:
        return (
            f"the config names the function {name!r}; a config may name functions of {', '.join(own)} only; "
            + hint
        )
    return None


@contextlib.contextmanager
def config_imports_limited() -> Iterator[None]:
    """While active, jsonargparse imports for a config value (a ``class_path``, a callable's
    path) only what :func:`config_import_problem` allows, and raises :class:`ConfigImportError`
    otherwise; paths from kantk's and Lightning's own type annotations are not limited."""
    try:
        import jsonargparse
    except ImportError:  # pragma: no cover - LightningCLI needs jsonargparse
        yield
        return
    import importlib

    modules = []
    for name in ("_util", "_typehints", "_actions", "_from_config", "typing", "_core"):
        try:
            modules.append(importlib.import_module(f"{jsonargparse.__name__}.{name}"))
        except ImportError:
            continue
    modules = [m for m in modules if callable(getattr(m, "import_object", None))]
    if not modules:  # pragma: no cover - a jsonargparse without import_object
        yield
        return
    originals = {m: m.import_object for m in modules}
    import_object = originals[modules[0]]
    import inspect

    if "check_path" not in inspect.signature(import_object).parameters:
        # older ones import their own annotations' types through the same function, unmarked: the
        # guard would refuse those (a DDP timeout needs datetime.timedelta)
        raise SystemExit(
            f"kantk: the Lightning commands need jsonargparse {MIN_JSONARGPARSE} or newer (found "
            f"{getattr(jsonargparse, '__version__', 'an older one')}): pip install 'kantk[cli]'"
        )

    def limited(name: Any, *args: Any, **kwargs: Any) -> Any:
        # check_path=False: a path from code (a type annotation), not from a value
        if kwargs.get("check_path", args[0] if args else True) is False or not isinstance(name, str):
            return import_object(name, *args, **kwargs)
        problem = config_import_problem(name)
        if problem:
            raise ConfigImportError(problem)
        obj = import_object(name, *args, **kwargs)
        problem = config_import_problem(name, obj)
        if problem:
            raise ConfigImportError(problem)
        return obj

    for m in modules:
        setattr(m, "import_object", limited)  # noqa: B010  (a module attribute mypy does not know)
    try:
        yield
    finally:
        for m, fn in originals.items():
            setattr(m, "import_object", fn)  # noqa: B010


class LogFileError(ValueError):
    """A logger of a Lightning command would replace or delete a file of an earlier run."""


#: The files a logger writes under fixed names in its log folder, by logger class name (any
#: subclass too): Lightning's CSVLogger deletes an existing ``metrics.csv`` when it starts and both
#: rewrite ``hparams.yaml``. Loggers that name their files uniquely (event files) are not listed.
LOGGER_FILES: dict[str, tuple[str, ...]] = {
    "CSVLogger": ("metrics.csv", "hparams.yaml"),
    "TensorBoardLogger": ("hparams.yaml",),
}


def logger_file_problem(loggers: Sequence[Any], stage: str) -> str | None:
    """Why the ``loggers`` of a Lightning command must not start, or ``None`` when they may.

    A logger of :data:`LOGGER_FILES` whose log folder already holds one of its files (a logger
    given an earlier run's ``version``, or a folder of the user's own) would delete or overwrite
    it; the default, a new ``version_N`` folder, never does. Checked before the trainer starts.
    """
    for logger in loggers:
        names = next(
            (LOGGER_FILES[c.__name__] for c in type(logger).__mro__ if c.__name__ in LOGGER_FILES), ()
        )
        log_dir = getattr(logger, "log_dir", None) if names else None
        if not isinstance(log_dir, str):
            continue
        for name in names:
            path = os.path.join(log_dir, name)
            if _path_exists(path):
                return (
                    f"{stage}'s {type(logger).__name__} would overwrite {path!r} (not written by this run); "
                    "move it, or give the logger a new version (or leave version unset for a new version_N)"
                )
    return None


def check_checkpoint_file(path: str, model: Any, dtype: str | None = None) -> None:
    """End a Lightning command given ``--ckpt_path path`` unless the checkpoint's model tensors pass
    the value checks of a ``.kantk`` file (:func:`kantk.cli_models.check_checkpoint_values`, in the
    dtype of ``model``, the KAN the config built, or ``dtype``, the name of the one the trainer's
    precision computes in): a NaN checkpoint tested as ``test_rmse nan``,
    one with a mask of 3 as a plausible number. Read with ``weights_only=True``; a file that does
    not load ends the command with the reason, as in the other commands."""
    import torch

    from kantk.cli_models import check_checkpoint_values, fail, lightning_checkpoint_problem, read_checkpoint

    checkpoint = read_checkpoint(path)
    problem = lightning_checkpoint_problem(checkpoint, model)
    if problem:
        fail(f"cannot load checkpoint {path!r}: {problem}")
    check_checkpoint_values(path, checkpoint["state_dict"], model, getattr(torch, dtype) if dtype else None)


def check_checkpoint_source(config: Any) -> None:
    """End a Lightning command unless its ``ckpt_path`` (from ``--ckpt_path`` or a config file) is
    a local regular file or one of Lightning's names (``last``, ``best``, ...), and make Lightning
    read it with ``weights_only=True``.

    A config's ``ckpt_path: file:///...`` or ``http://...`` URL passed the file checks (which
    looked at local files only) and Lightning unpickled it, with ``weights_only: false`` or, for a
    remote file, by default: the checkpoint ran code. ``weights_only: false`` is refused.
    """
    from kantk.cli_models import fail

    ckpt_path = config.get("ckpt_path")
    if ckpt_path is not None:
        local = _local_checkpoint(os.fspath(ckpt_path), "ckpt_path")
        if local is not None:
            config["ckpt_path"] = local  # Lightning reads ~/x.ckpt as the home folder's too
    if "weights_only" in config:
        if config["weights_only"] is False:
            fail(
                "weights_only: false would let a checkpoint run code (it is a pickle); kantk reads "
                "checkpoints with weights_only: true (leave the option out)"
            )
        config["weights_only"] = True


def cli_class(package: str = "pytorch_lightning") -> type:
    """LightningCLI that checks, before it runs a command, the ``--ckpt_path`` file's values
    (:func:`check_checkpoint_file`) and its loggers' folders (:func:`logger_file_problem`: it raises
    :class:`LogFileError` with a ``kantk:`` line instead of losing a file).

    Args:
        package: The Lightning package (``"pytorch_lightning"`` or ``"lightning.pytorch"``).
    """
    return _cli_class(package)


@functools.cache
def _cli_class(package: str) -> type:  # one class per package (a pickled callback names it)
    import importlib

    LightningCLI: Any = importlib.import_module(package + ".cli").LightningCLI

    class KantkLightningCLI(LightningCLI):
        def _check(self, stage: str) -> None:
            config = self.config_init[stage]
            check_checkpoint_source(config)
            ckpt_path = config.get("ckpt_path")
            if ckpt_path is not None and os.path.isfile(os.fspath(ckpt_path)):
                # the dtype the run computes in: a "64-true" trainer makes a float32 config float64
                wide = str(getattr(self.trainer, "precision", "")).startswith("64")
                check_checkpoint_file(os.fspath(ckpt_path), self.model.model, "float64" if wide else None)
            problem = logger_file_problem(self.trainer.loggers, stage)
            if problem:
                raise LogFileError(problem)

        def before_fit(self) -> None:
            self._check("fit")
            self._last = _last_evaluation(package)
            self.trainer.callbacks.append(self._last)
            self._grid_warnings(before=True)

        def after_fit(self) -> None:
            finish_fit(self.trainer, self.model, self.datamodule, self._last)
            self._grid_warnings(before=False)

        def _grid_warnings(self, before: bool) -> None:
            """kantk.fit's warnings about inputs outside the grids, for ``kantk fit`` (a config of
            data in [200, 1000] on the default grid trained to val_rmse 0.37 without a word)."""
            from collections.abc import Mapping

            import torch

            from kantk.training import (
                _warn_of_hidden_values_the_basis_misses,
                _warn_of_inputs_the_basis_misses,
            )

            model = getattr(self.model, "model", None)
            dataset = getattr(self.datamodule, "dataset", None)
            if (
                not isinstance(model, kantk.KAN)
                or self.model.hparams.get("grid_update_every") is not None
                or not isinstance(dataset, Mapping)
                or not isinstance(dataset.get("train_input"), torch.Tensor)
                or not self.trainer.is_global_zero
                or (not before and (self.trainer.interrupted or self.trainer.global_step == 0))
            ):
                return
            x = dataset["train_input"]
            if x.dim() != 2 or x.shape[1] != model.widths[0] or x.shape[0] == 0 or not x.is_floating_point():
                return  # data that does not fit the model: Lightning's checks say so, not a warning
            warn = _warn_of_inputs_the_basis_misses if before else _warn_of_hidden_values_the_basis_misses
            warn(model, x.to(device=model.device), advice="cli")

        def before_validate(self) -> None:
            self._check("validate")

        def before_test(self) -> None:
            self._check("test")

        def before_predict(self) -> None:
            self._check("predict")

    return _picklable(KantkLightningCLI, package)


def _last_evaluation(package: str) -> Any:
    """A callback that records the step of the run's last validation and last saved checkpoint."""
    return _last_evaluation_class(package)()


@functools.cache
def _last_evaluation_class(package: str) -> type:
    import importlib

    Callback: Any = importlib.import_module(package).Callback

    class LastEvaluation(Callback):
        validated_at: int | None = None
        saved_at: int | None = None

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                self.validated_at = trainer.global_step

        def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
            self.saved_at = trainer.global_step

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            _command_warnings_in_worker(trainer)

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            # ddp_spawn's worker processes end without kantk's close_process_group, and a gloo
            # group left to their shutdown aborted a finished run ("terminate called without an
            # active exception"); this hook is the last of the run's, and Lightning's collectives
            # after it (none in the spawned run's result collection) check for a group first
            if getattr(trainer.strategy, "_start_method", None) in ("spawn", "fork", "forkserver"):
                close_process_group()

    return _picklable(LastEvaluation, package)


def _command_warnings_in_worker(trainer: Any) -> None:
    """In a worker process of ``ddp_spawn`` (started afresh, without :func:`main`'s set-up), show
    kantk's warnings as ``kantk: warning: ...`` lines as the command does: they printed as Python's
    ``.../multiprocessing/process.py:108: UserWarning: kantk: ...`` and the source line."""
    import multiprocessing

    if (
        multiprocessing.parent_process() is None
        or getattr(trainer.strategy, "_start_method", None) not in ("spawn", "forkserver")
        or getattr(warnings.showwarning, "func", None) is _show_warning
    ):
        return
    from kantk._warnings import IN_COMMAND

    IN_COMMAND.set(True)  # the worker ends with the run: nothing to reset
    _show_warnings_as_lines()


def finish_fit(trainer: Any, model: Any, datamodule: Any, last: Any) -> None:
    """After ``kantk fit``: validate and save the final step when the schedule did not.

    Lightning validates every ``check_val_every_n_epoch`` epochs and its default checkpoint follows
    the validations, so a ``--trainer.max_steps`` that is not a multiple of that period ended with
    no checkpoint of the last steps (``max_steps: 3`` of the shipped configs, which validate every
    10 epochs, wrote none at all) and no final metrics. Now the final step is saved as
    ``last.ckpt`` by each checkpoint callback that keeps the latest state (no ``monitor``, or
    ``save_last`` True or ``"link"``), unless a ``last.ckpt`` there is not this run's (nor the checkpoint it
    resumed from, nor one of an earlier run of it), and then validated (when the data module has
    validation data). An interrupted run, a
    ``fast_dev_run`` and a run with checkpointing off are left as they are.
    """
    if trainer.interrupted or trainer.global_step == 0 or last is None or trainer.fast_dev_run:
        return
    step = trainer.global_step
    if last.saved_at != step:
        # saved before the final validation: trainer.validate emptied the fit loop's state (where
        # the shuffled loader was) and resets trainer.ckpt_path, and a resumed run ended elsewhere
        _save_last(trainer, step)
    if last.validated_at != step and trainer.limit_val_batches != 0 and _validates(datamodule):
        trainer.validate(model, datamodule=datamodule, verbose=False)


def _save_last(trainer: Any, step: int) -> None:
    """Save the final ``step`` as ``last.ckpt`` for each checkpoint callback that keeps the latest
    state (see :func:`finish_fit`)."""
    resumed_from = os.path.realpath(str(trainer.ckpt_path)) if trainer.ckpt_path is not None else None
    written: set[str] = set()
    for callback in trainer.checkpoint_callbacks:
        # the latest state is kept by a callback without a monitor, or one with save_last (True:
        # its last.ckpt held the last validation's step, 10 of 12; "link": a link to that step's
        # top-k file, which is removed first so that the save never writes through it)
        keeps_last = getattr(callback, "monitor", None) is None or getattr(callback, "save_last", None) in (
            True,
            "link",
        )
        if not keeps_last or not getattr(callback, "dirpath", None):
            continue
        path = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
        if path in written:  # two callbacks of one folder
            continue
        # this run's last.ckpt (save_last's, or the one written here by the run it resumed, whose
        # callback state names it) is brought up to date; anyone else's is kept
        ours = getattr(callback, "last_model_path", None) == path or resumed_from == os.path.realpath(path)
        exists = trainer.strategy.broadcast(os.path.exists(path) if trainer.is_global_zero else None)
        if exists and not ours:
            warnings.warn(f"the final step {step} was not saved: {path!r} exists", stacklevel=1)
            continue
        callback.last_model_path = path  # before saving: the checkpoint's callback state names it
        if trainer.is_global_zero and os.path.islink(path):  # save_last="link": never through it
            os.remove(path)
        trainer.save_checkpoint(path, weights_only=False)  # resumable: optimizer and loops too
        written.add(path)


def _validates(datamodule: Any) -> bool:
    """Whether ``datamodule`` serves validation batches: it defines ``val_dataloader`` (Lightning's
    own raises "must be implemented") and that gives at least one batch."""
    if datamodule is None:
        return False
    defined = next((c for c in type(datamodule).__mro__ if "val_dataloader" in vars(c)), None)
    if defined is None or defined.__module__.split(".")[0] in ("pytorch_lightning", "lightning"):
        return False
    loader = datamodule.val_dataloader()
    try:
        return len(loader) > 0
    except TypeError:  # an iterable without a length: Lightning decides
        return True


#: Deepest nesting of lists and mappings a ``kantk fit`` config (or value) may have: 900 levels
#: ended in a RecursionError inside jsonargparse; kantk's own configs have about five.
MAX_CONFIG_DEPTH = 64


def refuse_yaml_aliases() -> None:
    """Make jsonargparse's YAML loader (configs and values) refuse aliases (``*name``): nine
    aliases per level, five levels deep ("billion laughs"), took 74 s and 1 GB before the config
    was refused, and each level more is nine times that; and nesting deeper than
    :data:`MAX_CONFIG_DEPTH`. Scanning for them is linear."""
    import yaml
    from jsonargparse import set_loader

    try:
        from jsonargparse._loaders_dumpers import loaders
    except ImportError:  # another jsonargparse: its own loader stays
        return
    load = loaders.get("yaml")
    if load is None or getattr(load, "refuses_aliases", False):
        return

    opening = (
        yaml.BlockMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.FlowSequenceStartToken,
    )
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)

    def without_aliases(stream: str) -> Any:
        if isinstance(stream, str) and ("*" in stream or "[" in stream or "{" in stream or "\n" in stream):
            depth = 0
            for token in yaml.scan(stream, Loader=yaml.SafeLoader):
                if isinstance(token, yaml.AliasToken):
                    raise yaml.YAMLError(
                        f"YAML aliases (*{token.value}) are not accepted in kantk configs; "
                        "write the values out"
                    )
                depth += isinstance(token, opening) - isinstance(token, closing)
                if depth > MAX_CONFIG_DEPTH:
                    raise yaml.YAMLError(
                        f"the YAML nests lists or mappings more than {MAX_CONFIG_DEPTH} deep; kantk "
                        "configs need a few levels"
                    )
        return load(stream)

    without_aliases.refuses_aliases = True  # type: ignore[attr-defined]
    set_loader("yaml", without_aliases, exceptions=(yaml.YAMLError,))


#: Class paths that only the unified ``lightning`` package (or kantk's classes for it) provides.
_UNIFIED_SPELLING = re.compile(r"\blightning\.(?:pytorch|fabric)\b|\bkantk\.lightning\.unified\b")
#: Largest config file read to find out which Lightning package it names.
_MAX_CONFIG_SCAN = 10_000_000


def _config_paths(argv: Sequence[str]) -> list[str]:
    """The values of every ``--config`` in ``argv``: ``--config F``, ``--config=F`` and
    LightningCLI's short form ``-c F`` / ``-cF``."""
    paths = []
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name in ("--config", "-c"):
            paths.append(value if sep else (argv[i + 1] if i + 1 < len(argv) else ""))
        elif arg.startswith("-c") and not arg.startswith("--") and len(arg) > 2:
            paths.append(arg[2:])
    return paths


def _check_config_files(command: str, argv: Sequence[str]) -> None:
    """A ``--config`` file must be UTF-8 text of at most :data:`_MAX_CONFIG_SCAN` bytes (a YAML
    file); else one usage line and exit status 2, as for a binary file. (A missing one is left to
    LightningCLI, which says so.)"""
    for path in _config_paths(argv):
        try:
            if not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            if size > _MAX_CONFIG_SCAN:
                problem = f"is {size:,} bytes, more than a config may be ({_MAX_CONFIG_SCAN:,})"
            else:
                with open(path, encoding="utf-8") as f:
                    f.read()
                continue
        except UnicodeDecodeError as exc:
            problem = f"is not UTF-8 text (byte {exc.start}); a YAML config is expected"
        except OSError:
            continue  # LightningCLI reports an unreadable config
        usage_exit(command, f"--config {path!r} {problem}")


def cli_package(argv: Sequence[str]) -> str:
    """The Lightning package that runs a ``fit|validate|test`` command.

    ``"lightning.pytorch"`` when the command line or a ``--config`` file names a class path of
    the unified ``lightning`` package (``lightning.pytorch...``, ``lightning.fabric...`` or
    ``kantk.lightning.unified...``) and ``lightning`` is installed; ``"pytorch_lightning"``
    otherwise. Class paths of the other package are accepted either way (:func:`class_paths_for`).
    """
    texts = list(argv)
    for path in _config_paths(argv):
        try:
            if os.path.isfile(path) and os.path.getsize(path) <= _MAX_CONFIG_SCAN:
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
        except OSError:
            pass  # LightningCLI reports an unreadable config
    if not any(_UNIFIED_SPELLING.search(text) for text in texts):
        return "pytorch_lightning"
    import importlib.util

    try:
        found = importlib.util.find_spec("lightning.pytorch") is not None
    except ImportError:  # no 'lightning' package at all
        found = False
    return "lightning.pytorch" if found else "pytorch_lightning"


@contextlib.contextmanager
def class_paths_for(package: str) -> Iterator[None]:
    """While active, LightningCLI (jsonargparse) reads class paths of either Lightning package as
    ``package``'s: ``lightning.pytorch.callbacks.EarlyStopping`` resolves to
    ``pytorch_lightning.callbacks.EarlyStopping`` under ``pytorch_lightning`` and the other way
    round; ``kantk.lightning.X`` and ``kantk.lightning.unified.X`` likewise
    (:func:`kantk.lightning.compat.class_path_for`).
    """
    from kantk.lightning.compat import class_path_for

    try:
        from jsonargparse import _typehints
    except ImportError:  # pragma: no cover - LightningCLI needs jsonargparse
        yield
        return
    original = getattr(_typehints, "resolve_class_path_by_name", None)
    if original is None:  # another jsonargparse: class paths must be spelled for the package
        yield
        return

    def resolve(cls: Any, name: str) -> str:
        return original(cls, class_path_for(name, package))

    _typehints.resolve_class_path_by_name = resolve
    try:
        yield
    finally:
        _typehints.resolve_class_path_by_name = original


class ConfigSaveError(ValueError):
    """Saving the merged config of a Lightning command would overwrite an existing file."""


def config_save_problem(path: str, config: Any, stage: str) -> str | None:
    """Why the merged config must not be saved to ``path``, or ``None`` when it may be.

    Args:
        path: Where LightningCLI's ``SaveConfigCallback`` would write (``<log_dir>/config.yaml``).
        config: The parsed config (a jsonargparse ``Namespace``); every file it was read from, or
            names as a path, is an input.
        stage: The command (``fit``, ``validate``, ``test``), for the message.
    """
    if not _path_exists(path):
        return None
    if os.path.isdir(path):
        return f"{stage} cannot save its merged config to {path!r}: that is a folder"
    for flag, source in _input_paths(config):
        if same_file(path, source):
            return (
                f"{stage} would save its merged config to {path!r}, which is the input {flag} file; "
                "set --trainer.default_root_dir to another folder or keep a logger (it saves the config "
                "in a new version_N folder)"
            )
    return (
        f"{stage} would overwrite {path!r} (not written by this run) with its merged config; remove it or "
        "set --trainer.default_root_dir to another folder"
    )


def _path_exists(path: str) -> bool:
    """Whether ``path`` exists (a link too, even a dangling one), also in a remote log folder
    (fsspec, as Lightning's own checks)."""
    if os.path.lexists(path):
        return True
    if "://" not in path:
        return False
    from lightning_fabric.utilities.cloud_io import get_filesystem

    return bool(get_filesystem(path).exists(path))


def _input_paths(config: Any) -> Iterator[tuple[str, str]]:
    """``(flag, absolute path)`` of every file a parsed LightningCLI config was read from or names."""
    try:
        from jsonargparse import Namespace, Path
    except ImportError:  # pragma: no cover - LightningCLI needs jsonargparse
        return
    stack: list[tuple[str, Any]] = [("", config)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, Path):
            yield "--" + key.removesuffix(".__path__"), value.absolute  # __path__: a file read for a group
        elif isinstance(value, Namespace):
            stack.extend((f"{key}.{k}" if key else k, v) for k, v in vars(value).items())
        elif isinstance(value, (list, tuple)):
            stack.extend((key, v) for v in value)


def save_config_callback_class(package: str = "pytorch_lightning") -> type:
    """LightningCLI's ``SaveConfigCallback`` that refuses to replace a file, with a ``kantk:`` line.

    Lightning (``overwrite=False``) stops with a RuntimeError when ``config.yaml`` exists; this
    subclass checks first (on rank 0, told to every rank) and raises :class:`ConfigSaveError`, which
    names the file and says when it is the ``--config`` input. It runs in the trainer's setup,
    before the first training step.

    Args:
        package: The Lightning package of the CLI (``"pytorch_lightning"`` or ``"lightning.pytorch"``).
    """
    return _save_config_callback_class(package)


@functools.cache
def _save_config_callback_class(package: str) -> type:  # one class per package, as _cli_class
    import importlib

    SaveConfigCallback: Any = importlib.import_module(package + ".cli").SaveConfigCallback

    class KantkSaveConfigCallback(SaveConfigCallback):
        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            if not self.already_saved and self.save_to_log_dir and not self.overwrite:
                log_dir = trainer.log_dir  # a collective call: every rank
                problem = None
                if log_dir is not None and trainer.is_global_zero:
                    command = str(getattr(stage, "value", stage))  # a TrainerFn (a str enum)
                    problem = config_save_problem(
                        os.path.join(log_dir, self.config_filename), self.config, command
                    )
                problem = trainer.strategy.broadcast(problem)
                if problem:
                    raise ConfigSaveError(problem)
            saving = not self.already_saved and self.save_to_log_dir
            super().setup(trainer, pl_module, stage)
            if saving:
                log_dir = trainer.log_dir  # a collective call: every rank (rank 0 alone hung DDP)
                if log_dir is not None and trainer.is_global_zero:
                    self.written = os.path.join(log_dir, self.config_filename)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            # a run that failed before its first step (the sanity check, a model that does not
            # fit the data) leaves no results: its config went too, or it blocked the corrected
            # rerun ("would overwrite ... config.yaml (not written by this run)")
            written = getattr(self, "written", None)
            if written and trainer.global_step == 0 and os.path.isfile(written):
                os.remove(written)
                self.written = None

    return _picklable(KantkSaveConfigCallback, package)


def _picklable(cls: type, package: str) -> type:
    """Name ``cls``, a class made per Lightning package, as this module's attribute (built again by
    the module's ``__getattr__`` in a fresh process): ``ddp_spawn`` pickles the Trainer's
    callbacks, and a class local to a function failed with "Can't pickle local object"."""
    cls.__name__ = cls.__qualname__ = f"{cls.__name__}_{package.replace('.', '_')}"
    cls.__module__ = __name__
    return cls


def __getattr__(name: str) -> Any:
    """The per-package classes of :func:`_picklable`, by name (unpickling in a spawned process)."""
    makers = (
        ("KantkSaveConfigCallback", _save_config_callback_class),
        ("LastEvaluation", _last_evaluation_class),
        ("KantkLightningCLI", _cli_class),
    )
    for base, make in makers:
        for package in ("pytorch_lightning", "lightning.pytorch"):
            if name == f"{base}_{package.replace('.', '_')}":
                return make(package)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
