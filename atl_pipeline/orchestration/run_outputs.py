"""Each run's stage outputs kept apart, so a run and its re-executions deploy what the run's record says.

Dagster's filesystem IO manager keeps one file per asset, overwritten by every run: a re-execution
from failure of an older run would load the newest run's outputs (another file, another release)
under the older run's tags. Here each run writes under `outputs/<run id>/`, and a stage loads:
- an upstream stage of its own run, or of the run it re-executes: that run's file (Dagster names it);
- a stage outside its run (a stage materialized alone): the run of that stage's latest
  materialization, recorded in `outputs/<run id>/inputs.json`, so that a re-execution of this run
  loads the very same one.
The outputs of the KEEP_RUNS newest runs are kept, and always each stage's newest.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

from dagster import (
    ConfigurableIOManagerFactory,
    Failure,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
)

from atl_pipeline.orchestration.dagster_adapter import producing_run, run_of_input

KEEP_RUNS = 100
INPUTS = "inputs.json"


class RunOutputs(ConfigurableIOManagerFactory):
    """Stage outputs, pickled per run under `base_dir` (default: `outputs/` in the instance's storage folder)."""

    base_dir: str | None = None

    def create_io_manager(self, context: InitResourceContext) -> IOManager:
        return _RunOutputs(Path(self.base_dir) if self.base_dir else Path(context.instance.storage_directory())
                           / "outputs")


class _RunOutputs(IOManager):
    def __init__(self, root: Path):
        self.root = root

    def handle_output(self, context: OutputContext, obj: object) -> None:
        file = self._folder(context.run_id) / _name(context.asset_key.path)
        file.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def _folder(self, run_id: str) -> Path:
        """The run's folder; made, and the oldest runs' pruned, the first time."""
        folder = self.root / run_id
        if not folder.exists():
            folder.mkdir(parents=True)
            prune(self.root, KEEP_RUNS)
        return folder

    def load_input(self, context: InputContext) -> object:
        root, key = self.root, context.asset_key
        source = producing_run(context) or self._outside_source(context)
        context.add_input_metadata({"from run": source})
        try:
            return pickle.loads((root / source / _name(key.path)).read_bytes())
        except FileNotFoundError:
            raise Failure(f"the output of {key.to_user_string()} by run {source} is no longer kept (the "
                          f"{KEEP_RUNS} newest runs' are): materialize {key.to_user_string()} again",
                          allow_retries=False) from None

    def _outside_source(self, context: InputContext) -> str:
        """The run whose output of a stage outside this run it loads: the one its parent loaded, for a
        re-execution; else the stage's latest materialization's. Recorded for this run's re-executions."""
        root, run, name = self.root, run_of_input(context), context.asset_key.to_user_string()
        if run.parent_run_id:
            source = _inputs(root / run.parent_run_id).get(name)
            if source is None:
                raise Failure(f"run {run.parent_run_id} left no record of the {name} it loaded: launch a new "
                              "run rather than re-executing it", allow_retries=False)
        else:
            latest = context.instance.get_latest_materialization_event(context.asset_key)
            if latest is None:
                raise Failure(f"{name} was never materialized: materialize it first", allow_retries=False)
            source = latest.run_id
        folder = self._folder(run.run_id)
        (folder / INPUTS).write_text(json.dumps({**_inputs(folder), name: source}))
        return source


def prune(root: Path, keep: int) -> None:
    """Remove the outputs of all but the `keep` newest runs, keeping each stage's newest output."""
    runs = sorted((folder for folder in root.iterdir() if folder.is_dir()), key=lambda f: f.stat().st_mtime,
                  reverse=True)
    newest: dict[str, Path] = {}
    for folder in runs:
        for file in folder.iterdir():
            if file.name != INPUTS:
                newest.setdefault(file.name, folder)
    needed = set(newest.values())
    for folder in runs[keep:]:
        if folder not in needed:
            shutil.rmtree(folder, ignore_errors=True)


def _inputs(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / INPUTS).read_text())
    except FileNotFoundError:
        return {}


def _name(path: list[str]) -> str:
    return "__".join(path)
