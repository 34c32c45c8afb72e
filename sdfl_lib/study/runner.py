"""The study runner: execute the numbered notebooks with papermill and render them to HTML.

`sdfl study --params params/demo.yaml [--only 01,03] [--reports DIR]` reads one YAML file of
parameters, executes `notebooks/NN_*.ipynb` in order into `runs/<name>/notebooks/` and renders
each executed notebook to `reports/<name>/NN_*.html`. The YAML holds common keys (given to every
notebook) and one section per notebook, named after it (`data` for `01_data.ipynb`, `train` for
`03_train.ipynb`, ...). A section's keys become the notebook's parameters, except where the
notebook declares one parameter named after its section (`train = {...}` in 03_train): then the
section arrives whole as that dict (the training keys, checked by `TrainConfig`). Every other key
must be a parameter of the notebook that receives it, so a misspelt key fails before anything runs. Notebooks talk to each other only through files in the
run folder, whose path they receive as `run_dir`.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdfl_lib.errors import EXIT_USAGE, DataError, UsageError
from sdfl_lib.paths import REPO_ROOT
from sdfl_lib.progress import PROGRESS_ENV

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
_NOTEBOOK_RE = re.compile(r"^(\d\d)_(\w+)\.ipynb$")
# Keys the runner itself consumes; they never reach a notebook.
_RUNNER_KEYS = ("name", "run_root", "kernel_name")
KERNEL_NAME = "sdfl-study"


class StudyError(DataError):
    """A study that cannot start (a missing file) or a notebook that failed (exit 1)."""


class ParameterError(StudyError, UsageError):
    """A parameter file, key or value the study cannot run with: found before any kernel
    starts (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass
class Notebook:
    """One numbered notebook of the study: `01_data.ipynb` has number "01" and section "data"."""

    path: Path
    number: str
    section: str

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class StudyResult:
    """What a study run left behind: the run folder, executed notebooks, HTML reports, timings."""

    run_dir: Path
    executed: list[Path] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)


def find_notebooks(notebooks_dir: Path | str = NOTEBOOK_DIR) -> list[Notebook]:
    """The study's notebooks `NN_name.ipynb` in `notebooks_dir`, in order."""
    notebooks_dir = Path(notebooks_dir)
    found = []
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        m = _NOTEBOOK_RE.match(path.name)
        if m:
            found.append(Notebook(path=path, number=m.group(1), section=m.group(2)))
    if not found:
        raise StudyError(f"no notebooks named NN_name.ipynb in {notebooks_dir}")
    return found


def select_notebooks(notebooks: list[Notebook], only: str | Sequence[str] | None) -> list[Notebook]:
    """Keep the notebooks named in `only` ("01,03", or numbers/stems/sections); None keeps all."""
    if not only:
        return notebooks
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    chosen = []
    for w in wanted:
        hits = [nb for nb in notebooks if w in (nb.number, nb.stem, nb.section, nb.number.lstrip("0"))]
        if not hits:
            valid = ", ".join(nb.stem for nb in notebooks)
            raise ParameterError(f"--only {w!r} matches no notebook; valid: {valid}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen, key=lambda nb: nb.number)


def load_params(params_path: Path | str) -> dict[str, Any]:
    """Read a study's YAML parameters; `name` defaults to the file's stem."""
    params_path = Path(params_path)
    if not params_path.is_file():
        raise StudyError(f"parameters file not found: {params_path}")
    params = _read_yaml(params_path)
    params = {} if params is None else params  # an empty file, or comments only
    if not isinstance(params, dict):
        raise ParameterError(f"{params_path}: expected a mapping of keys to values at top level")
    if not params:
        # Every default is the paper's full set-up (ResNet-50 at 512x512, batch 32): on a CPU it
        # runs for days, or until memory runs out.
        raise ParameterError(
            f"{params_path} holds no parameters; start from a file in params/ (demo.yaml runs "
            "on a CPU, paper.yaml on a GPU node)"
        )
    params.setdefault("name", params_path.stem)
    if not re.fullmatch(r"[\w.-]+", str(params["name"])):
        raise ParameterError(f"{params_path}: name {params['name']!r} must be a plain folder name")
    return params


def _read_yaml(path: Path) -> Any:
    """The YAML in `path`; a syntax error is one line naming the file, line and column."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ParameterError(f"{path}: not valid YAML{where}: {problem}") from None


def apply_sets(params: dict[str, Any], items: Sequence[str]) -> dict[str, Any]:
    """Apply `KEY=VALUE` items to a copy of the parameters: dotted keys reach into sections and
    lists (`data.datasets.0.root=/data/casia2`), values are read as YAML (`3`, `true`, `[a, b]`)."""

    out = copy.deepcopy(params)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ParameterError(f"--set {item!r}: the value is not YAML ({err.__class__.__name__})") from None
        parts = key.strip().split(".")
        node: Any = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise ParameterError(f"--set {item!r}: {where} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if node.get(part) is None:  # a missing or empty section (`train:`)
                        node[part] = {}
                    node = node[part]
            else:
                raise ParameterError(f"--set {item!r}: {'.'.join(parts[:depth])} is a value, not a section")
    return out


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged `parameters` (parsed, not pattern-matched)."""

    import nbformat  # why: heavy, only for the study's notebooks

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise StudyError(f"{path.name}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as err:
        raise StudyError(f"{path.name}: parameters cell does not parse: {err}") from None
    return {t.id for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def notebook_parameters(
    params: dict[str, Any], notebooks: list[Notebook], source: str = "parameters"
) -> dict[str, dict[str, Any]]:
    """Split the YAML into the values each notebook receives; unknown keys fail, naming the file."""
    sections = {nb.section for nb in notebooks}
    declared = {nb.section: declared_parameters(nb.path) for nb in notebooks}
    common = {k: v for k, v in params.items() if k not in sections and k not in _RUNNER_KEYS}
    for key in common:
        if not any(key in names for names in declared.values()):
            raise ParameterError(
                f"{source}: top-level key {key!r} is not a parameter of any notebook "
                f"(sections are {', '.join(sorted(sections))})"
            )
    out = {}
    for nb in notebooks:
        section = params.get(nb.section) or {}
        if not isinstance(section, dict):
            raise ParameterError(f"{source}: section {nb.section!r} must be a mapping")
        values = {k: v for k, v in common.items() if k in declared[nb.section]}
        if nb.section in declared[nb.section]:
            if nb.section == "train":  # the training keys: checked now, not hours later in 03
                from sdfl_lib.train.config import TrainConfig  # why: not loaded by `sdfl --help`

                try:
                    TrainConfig.from_dict(section)
                except ValueError as err:
                    raise ParameterError(f"{source}: section 'train': {err}") from None
            out[nb.section] = {**values, nb.section: section}
            continue
        unknown = sorted(set(section) - declared[nb.section])
        if unknown:
            raise ParameterError(
                f"{source}: {', '.join(map(repr, unknown))} in section {nb.section!r} "
                f"not a parameter of {nb.path.name} (valid: {', '.join(sorted(declared[nb.section]))})"
            )
        values.update(section)
        out[nb.section] = values
    return out


_ANY = object()  # a default that is not a literal: any value goes
_KINDS = {bool: ((bool,), "true or false"), int: ((int,), "a whole number"),
          float: ((int, float), "a number"), str: ((str,), "a string"),
          list: ((list,), "a list"), tuple: ((list,), "a list"), dict: ((dict,), "a mapping")}  # fmt: skip
# Values a notebook takes in more than one form: evaluate's parse_robustness also takes a list
# of kinds or a mapping of kind -> levels.
_ALSO = {"robustness": (list, dict)}
_MINIMUM = {"seed": 0, "nproc": 1}
# Mappings of training-config keys inside sections, checked as `TrainConfig` checks them.
_TRAIN_MAPPINGS = {"optimization": ("short", "finetune")}


def parameter_defaults(path: Path) -> dict[str, Any]:
    """The default of each parameter of a notebook's `parameters` cell (`_ANY` when it is not a
    literal)."""
    import nbformat  # why: heavy, only for the study's notebooks

    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    defaults: dict[str, Any] = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = _ANY
            defaults.update((t.id, value) for t in node.targets if isinstance(t, ast.Name))
    return defaults


def _type_problem(key: str, default: Any, value: Any) -> str:
    """Why `value` cannot stand where the notebook's default is `default` ("" when it can);
    inside a mapping, the keys the default has are checked the same way."""
    if default is _ANY or default is None or type(default) not in _KINDS:
        return ""
    kinds, name = _KINDS[type(default)]
    kinds += _ALSO.get(key, ())
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        return f"expected {name} (the default is {default!r}), got {value!r}"
    if key in _MINIMUM and value < _MINIMUM[key]:
        return f"must be >= {_MINIMUM[key]}, got {value!r}"
    if isinstance(default, dict) and isinstance(value, dict):
        for inner in value.keys() & default.keys():
            problem = _type_problem(inner, default[inner], value[inner])
            if problem:
                return f"{inner}: {problem}"
    return ""


def check_parameter_values(params: dict[str, Any], values: dict[str, dict[str, Any]],
                           notebooks: list[Notebook], source: str) -> None:
    """Every value a notebook would receive has the type of its default (and training keys
    nested in sections pass `TrainConfig`), checked before any kernel starts."""
    from sdfl_lib.train.config import TrainConfig  # why: not loaded by `sdfl --help`

    for nb in notebooks:
        defaults = parameter_defaults(nb.path)
        section = params.get(nb.section) or {}
        for key, value in values[nb.section].items():
            if key == nb.section == "train":
                continue  # the training keys, checked by TrainConfig in notebook_parameters
            where = nb.section if key == nb.section else f"{nb.section}.{key}" if key in section else key
            problem = _type_problem(key, defaults.get(key, _ANY), value)
            if problem:
                raise ParameterError(f"{source}: {where}: {problem}")
        mappings = {k: section.get(k) for k in _TRAIN_MAPPINGS.get(nb.section, ())}
        mappings.update((f"variants.{k}", v) for k, v in (section.get("variants") or {}).items())
        for key, mapping in mappings.items():
            try:
                TrainConfig.from_dict(mapping or {})
            except (ValueError, TypeError) as err:
                raise ParameterError(f"{source}: {nb.section}.{key}: {err}") from None


def checked_parameters(
    params_path: Path | str, sets: Sequence[str] = (), smoke: bool = False,
    notebooks_dir: Path | str = NOTEBOOK_DIR,
) -> tuple[dict[str, Any], list[Notebook], dict[str, dict[str, Any]], list[str]]:
    """The parameters a run would use, every key and value checked: (params, notebooks, the
    values of each notebook, notes on what smoke scale changed). Raises `ParameterError`."""
    params, notes = prepare_params(params_path, sets, smoke)
    notebooks = find_notebooks(notebooks_dir)
    values = notebook_parameters(params, notebooks, source=str(params_path))
    check_parameter_values(params, values, notebooks, str(params_path))
    return params, notebooks, values, notes


@contextmanager
def study_kernel(kernel_dir: Path) -> Iterator[str]:
    """A Jupyter kernel spec for this very interpreter, visible only while the study runs.

    A kernel named `python3` may resolve to another environment (a user-wide install); the
    notebooks must run with the interpreter that runs the study, so we point JUPYTER_PATH at a
    private kernel spec for `sys.executable`. Kernels started meanwhile draw text progress bars.
    """
    spec_dir = kernel_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        # The kernel's own log stays at errors: ipykernel 7 warns on every start that a local TCP
        # connection is unencrypted, a line per notebook on the study's terminal.
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.log_level=ERROR"],
        "display_name": f"sdfl ({sys.prefix})",
        "language": "python",
        # Inherited by every process the kernel starts, so that those of a dead kernel are found.
        "env": {KERNEL_TAG: kernel_tag(kernel_dir)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", PROGRESS_ENV)}
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(kernel_dir)] + ([old["JUPYTER_PATH"]] if old["JUPYTER_PATH"] else []))
    # The kernels' progress bars as text: the terminal shows them, the reports leave them out.
    os.environ[PROGRESS_ENV] = "text"
    try:
        yield KERNEL_NAME
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


KERNEL_TAG = "SDFL_STUDY_KERNEL"


def kernel_tag(kernel_dir: Path) -> str:
    """The value of `KERNEL_TAG` in the environment of this run's kernels and their children."""
    return f"{kernel_dir.resolve()}:{os.getpid()}"


def stop_kernel_leftovers(tag: str, grace: float = 5.0) -> int:
    """Stops the processes a dead kernel left (DataLoader workers, the forkserver), found by
    `KERNEL_TAG` in their environment (Linux /proc; elsewhere nothing is found): SIGTERM, then
    SIGKILL after `grace` seconds. Returns how many there were."""
    wanted = f"{KERNEL_TAG}={tag}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    alive = list(found)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if not _gone(pid)]
            time.sleep(0.05)
    return len(found)


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for its parent counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _dead_kernel(nb: Notebook, executed: Path, html: Path, tag: str) -> StudyError:
    """The error for a kernel that died (killed, or out of memory): the notebook as far as it
    ran is rendered, the processes the kernel left are stopped; one message says all that."""
    import nbformat  # why: heavy, only for the study's notebooks

    where = ""
    if executed.is_file():
        cells = nbformat.read(str(executed), as_version=4).cells
        # The last cell papermill started (it marks even that one completed when the kernel dies).
        started = [i for i, c in enumerate(cells)
                   if c.get("metadata", {}).get("papermill", {}).get("start_time")]
        if started:
            first = next((ln for ln in cells[started[-1]].source.splitlines() if ln.strip()), "")
            where = f" in cell {started[-1]} ({first.strip()[:60]})"
        render_html(executed, html, failed=True)
    stopped = stop_kernel_leftovers(tag)
    left = f"; the {stopped} process(es) it left were stopped" if stopped else ""
    return StudyError(
        f"{nb.path.name}: the kernel died{where} (killed, or out of memory: lower the batch, "
        f"workers or image size); the notebook as far as it ran: "
        f"{html if executed.is_file() else 'not written'}{left}"
    )


def _notebook_failed(nb: Notebook, executed: Path, html: Path, err: Exception,
                     run_dir: Path) -> StudyError:
    """The error of a failed cell or a dead kernel, after rendering what the notebook did."""
    from papermill.exceptions import PapermillExecutionError  # why: heavy, only when a study runs

    if isinstance(err, PapermillExecutionError):
        render_html(executed, html, failed=True)
        return StudyError(_failure_message(nb, executed, err))
    return _dead_kernel(nb, executed, html, kernel_tag(run_dir / ".jupyter"))


def render_html(executed: Path, html_path: Path, cwd: Path | str | None = None,
                notebooks_dir: Path | str = NOTEBOOK_DIR, failed: bool = False) -> Path:
    """Render an executed notebook (`<run folder>/notebooks/NN_name.ipynb`) as a report of the
    run's site (`sdfl_lib.study.site`): `html_path` and the cleaned `.ipynb` beside it; `cwd`: the
    kernel's working directory (default this process's). A `failed` notebook's report keeps what
    it printed: that explains the failure."""
    from sdfl_lib.study import site  # why: heavy (nbconvert, viz), only when a report is rendered

    run_dir = executed.parent.parent
    ctx = _site_context(html_path.parent, run_dir, cwd, notebooks_dir)
    return site.render_report(executed, ctx, site.site_pages(executed.parent), run_dir.name,
                              keep_streams=failed)


def render_site(reports: Path, run_dir: Path, cwd: Path | str | None, name: str,
                notebooks_dir: Path | str = NOTEBOOK_DIR, skip: Sequence[str] = ()) -> list[Path]:
    """Every report of the run again (their navigation then lists them all) but those of `skip`
    (stems), and the index."""
    from sdfl_lib.study import site  # why: heavy (nbconvert, viz), only when a report is rendered

    return site.render_site(_site_context(reports, run_dir, cwd, notebooks_dir), name, skip)


def _site_context(reports: Path, run_dir: Path, cwd: Path | str | None, notebooks_dir: Path | str) -> Any:
    from sdfl_lib.study import site  # why: heavy (nbconvert, viz), only when a report is rendered

    return site.SiteContext(run_dir=run_dir, reports_dir=reports, source_dir=Path(notebooks_dir),
                            cwd=Path(cwd or os.getcwd()))


def _failure_message(nb: Notebook, executed: Path, err: Any) -> str:
    first = next((ln for ln in str(err.source).splitlines() if ln.strip()), "")
    return (
        f"{nb.path.name} failed at cell {err.cell_index} (In [{err.exec_count}]): "
        f"{err.ename}: {err.evalue}\n  cell starts: {first}\n  executed notebook: {executed}"
    )


# Which notebooks read the files of which: a notebook re-runs when one it reads from re-ran, and
# runs after them (02 shows the maps of 03's trained model). A section not listed reads from every
# notebook before it.
FEEDS = {"data": (), "modules": ("data", "train"), "train": ("data",), "evaluate": ("data", "train"),
         "optimization": ("data", "train")}
STATE_FILE = "study_state.json"


def execution_order(notebooks: list[Notebook]) -> list[Notebook]:
    """The notebooks in the order they run: by number, except that one runs after the notebooks
    it reads from (`FEEDS`): 01, 03, 02, 04, 05 for the study."""
    sections = {nb.section for nb in notebooks}
    order: list[Notebook] = []
    todo = list(notebooks)
    while todo:
        for nb in todo:
            before = [t.section for t in notebooks[: notebooks.index(nb)]]
            if set(FEEDS.get(nb.section, before)) & sections <= {o.section for o in order}:
                break
        else:  # notebooks reading each other: number order
            nb = todo[0]
        order.append(nb)
        todo.remove(nb)
    return order


class _Echo:
    """The running notebook's printed output (progress bars, epoch lines, notes) on the terminal."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _digest(nb: Notebook, parameters: dict[str, Any]) -> str:
    h = hashlib.sha256(nb.path.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed_keys(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            keys.append(f"{prefix}{k}")
    return keys


def prepare_params(
    params_path: Path | str, sets: Sequence[str] = (), smoke: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The study's parameters as a run uses them: the file, then `--set` items, then (with
    `smoke`) shrunk to smoke scale; also the notes on what smoke scale changed."""
    params = load_params(params_path)
    if sets:
        params = apply_sets(params, sets)
    notes: list[str] = []
    if smoke:
        from sdfl_lib.study.smoke import smoke_params  # why: not loaded by `sdfl --help`

        params, notes = smoke_params(params)
    return params, notes


@dataclass
class _StudyRun:
    """One run of the study: where it writes, what ran before (the state file) and what it did."""

    name: str
    run_dir: Path
    reports: Path
    values: dict[str, dict[str, Any]]
    resume: bool
    echo: bool
    papermill_args: dict[str, Any]
    cwd: Path | str | None
    notebooks_dir: Path | str
    result: StudyResult
    state: dict[str, Any] = field(default_factory=dict)
    reran: set[str] = field(default_factory=set)

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def save_state(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=1, default=str))

    def parameters_for(self, nb: Notebook, tag: str) -> dict[str, Any] | None:
        """The notebook's parameters, or None when `resume` finds it finished with the same ones."""
        parameters = {"run_dir": str(self.run_dir), **self.values[nb.section]}
        digest = _digest(nb, parameters)
        prev = self.state.get(nb.stem) or {}
        same = prev.get("digest") == digest
        upstream = sorted(f for f in FEEDS.get(nb.section, self.reran) if f in self.reran)
        executed = self.run_dir / "notebooks" / nb.path.name
        if self.resume and same and prev.get("status") == "completed" and executed.is_file() \
                and not upstream:
            print(f"{tag}: finished earlier with the same parameters, skipped", flush=True)
            return None
        if self.resume and prev and not same:
            changed = _changed_keys(prev.get("parameters", {}), json.loads(
                json.dumps(parameters, default=str))) or ["the notebook itself"]
            print(f"{tag}: re-runs, changed since the last run: {', '.join(changed)}", flush=True)
        elif self.resume and upstream:
            print(f"{tag}: re-runs, it reads what {', '.join(upstream)} wrote again", flush=True)
        if "resume" in declared_parameters(nb.path):
            # Continue an interrupted training/evaluation only when it ran with these parameters.
            parameters["resume"] = bool(self.resume and same and not upstream)
        self.state[nb.stem] = {"digest": digest, "status": "running", "parameters": parameters}
        return parameters

    def execute(self, nb: Notebook, executed: Path, parameters: dict[str, Any]) -> None:
        """Run one notebook with papermill; a failure renders it and raises a `StudyError`."""
        import papermill  # why: heavy, only when a study runs
        from nbclient.exceptions import DeadKernelError  # why: heavy, only when a study runs
        from papermill.exceptions import PapermillExecutionError  # why: heavy, only then

        self.save_state()
        start = time.perf_counter()
        stream = _Echo(sys.stderr) if self.echo else None
        try:
            papermill.execute_notebook(
                str(nb.path), str(executed), parameters=parameters, stdout_file=stream,
                stderr_file=stream, cwd=str(self.cwd) if self.cwd else None, **self.papermill_args)
        except (PapermillExecutionError, DeadKernelError) as err:
            self.state[nb.stem]["status"] = "failed"
            error = _notebook_failed(nb, executed, self.reports / f"{nb.stem}.html", err,
                                     self.run_dir)
            self.render_site(skip=[nb.stem])
            raise error from None
        else:
            self.state[nb.stem]["status"] = "completed"
        finally:
            # Whatever happened (a failed cell, Ctrl-C), the state file says it.
            self.result.seconds[nb.stem] = round(time.perf_counter() - start, 1)
            (self.run_dir / "study_times.json").write_text(json.dumps(self.result.seconds, indent=1))
            self.save_state()
        self.reran.add(nb.section)
        self.result.executed.append(executed)
        self.result.reports.append(
            render_html(executed, self.reports / f"{nb.stem}.html", self.cwd, self.notebooks_dir))

    def render_site(self, skip: Sequence[str] = ()) -> None:
        render_site(self.reports, self.run_dir, self.cwd, self.name, self.notebooks_dir, skip)


def run_study(
    params_path: Path | str,
    only: str | Sequence[str] | None = None,
    reports_dir: Path | str | None = None,
    run_root: Path | str | None = None,
    notebooks_dir: Path | str = NOTEBOOK_DIR,
    kernel_name: str | None = None,
    log_output: bool = False,
    cwd: Path | str | None = None,
    sets: Sequence[str] = (),
    smoke: bool = False,
    resume: bool = False,
    echo: bool = True,
) -> StudyResult:
    """Execute the study's notebooks with the parameters in `params_path` and render them to HTML.

    Notebooks land in `<run_root>/<name>/notebooks/` (run_root: argument, else the YAML's
    `run_root`, else `runs`), HTML in `reports_dir` (default `reports/<name>`). `sets`: `KEY=VALUE`
    items applied on top of the file; `smoke`: the same study at smoke scale (run name
    `<name>-smoke`). `resume`: skip the notebooks that finished with the same parameters, and let
    an interrupted training or evaluation continue from its state; a notebook whose parameters
    changed re-runs, and so do the notebooks it feeds. `echo`: show each notebook's printed output
    (progress, epochs) on the terminal as it runs. A failing cell stops the run with a `StudyError`
    naming the notebook and the cell; the failed notebook is still rendered.
    """
    params, notebooks, values, notes = checked_parameters(params_path, sets, smoke, notebooks_dir)
    name = str(params["name"])
    chosen = select_notebooks(notebooks, only)
    run_dir = Path(run_root or params.get("run_root") or "runs").resolve() / name
    reports = Path(reports_dir).resolve() if reports_dir else Path("reports").resolve() / name
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (run_dir / "study.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for note in notes:
        print(f"[study {name}] smoke: {note}", flush=True)
    echo = echo and not log_output  # log_output prints everything already
    run = _StudyRun(
        name=name, run_dir=run_dir, reports=reports, values=values, resume=resume, echo=echo,
        papermill_args={"kernel_name": kernel_name or params.get("kernel_name"),
                        "log_output": log_output, "progress_bar": not echo},
        cwd=cwd, notebooks_dir=notebooks_dir, result=StudyResult(run_dir=run_dir))
    if run.state_path.is_file():
        run.state = json.loads(run.state_path.read_text())
    with study_kernel(run_dir / ".jupyter") as own_kernel:
        run.papermill_args["kernel_name"] = run.papermill_args["kernel_name"] or own_kernel
        for i, nb in enumerate(execution_order(chosen), 1):
            executed = run_dir / "notebooks" / nb.path.name
            tag = f"[study {name}] {i}/{len(chosen)} {nb.path.name}"
            parameters = run.parameters_for(nb, tag)
            if parameters is None:
                run.result.skipped.append(executed)
                continue
            print(f"{tag} -> {executed}", flush=True)
            run.execute(nb, executed, parameters)
            print(f"[study {name}] {nb.stem} done in {run.result.seconds[nb.stem]:.0f} s", flush=True)
    run.render_site()
    run.result.reports.sort()
    return run.result


def _main(args: argparse.Namespace) -> int:
    # Errors go to the one handler of `sdfl_lib.cli.main`: exit 2 for parameters, 1 for a failure.
    result = run_study(
        args.params, only=args.only, reports_dir=args.reports, run_root=args.run_root,
        kernel_name=args.kernel, log_output=args.log_output, sets=args.set or (),
        smoke=args.smoke, resume=args.resume, echo=not args.quiet,
    )
    total = sum(result.seconds.values())
    print(f"study finished in {total:.0f} s; run folder {result.run_dir}")
    for path in result.reports:
        print(f"  report: {path}")
    return 0


def register(subparsers: Any) -> None:
    """Add `sdfl study` to the command line."""
    p = subparsers.add_parser(
        "study", help="run the study's notebooks with papermill and render HTML reports",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--params", required=True, help="YAML parameters, e.g. params/demo.yaml")
    p.add_argument("--only", default=None, help="comma-separated notebooks to run, e.g. 01,03")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a parameter without editing the file: dotted keys, list indices, "
                        "YAML values (train.epochs=3, data.datasets.0.root=/data/casia2); repeatable")
    p.add_argument("--smoke", action="store_true",
                   help="the same study at smoke scale (tiny images, a step or two; run <name>-smoke)")
    p.add_argument("--resume", action="store_true",
                   help="skip notebooks that finished with the same parameters; continue training "
                        "and evaluation where they stopped")
    p.add_argument("--reports", default=None, help="folder for the HTML (default reports/<name>)")
    p.add_argument("--run-root", default=None, help="parent of the run folder (default runs)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel (default: this interpreter)")
    p.add_argument("--log-output", action="store_true", help="echo all notebook output to the log")
    p.add_argument("--quiet", action="store_true", help="do not show the notebooks' progress")
    p.set_defaults(func=_main)
