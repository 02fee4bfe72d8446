"""Run or resume one training run into its table: rows appended as they come, a checkpoint
beside the table after each row, a finished run's rows returned without building anything."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from .._journal import CsvJournal
from .config import TrainConfig
from .trainer import Trainer


def checkpoint_path(out: Path) -> Path:
    return out.with_suffix(".ckpt.pt")


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _same_run(row: dict[str, str], config: TrainConfig) -> bool:
    want = dict(problem=config.problem, estimator=config.estimator, seed=str(config.seed), preset=config.preset)
    return all(row.get(k) == v for k, v in want.items())


def _finished_rows(config: TrainConfig, out: Path) -> list[dict[str, Any]] | None:
    ckpt = checkpoint_path(out)
    if not (out.exists() and ckpt.exists()):
        return None
    rows = CsvJournal(out).rows()
    if not rows or not _same_run(rows[0], config):
        return None
    last = rows[-1]
    if int(last["step"]) < config.steps and last.get("status", "ok") == "ok":
        return None
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if state["identity"] != config.identity() or int(state["step"]) != int(last["step"]):
        return None
    return rows


def train(config: TrainConfig, out: str | Path | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Run (or resume) one training run; returns its rows. With ``out``, rows are appended to
    that CSV as they come and a checkpoint ``<out>.ckpt.pt`` is kept beside it; a rerun with
    the same settings continues after the last checkpointed step (and a larger ``steps``
    extends a finished run). A run whose last row is a divergence is not retried."""
    from tqdm.auto import tqdm

    if out is not None:  # a finished (or diverged) run: return its rows without building anything
        done = _finished_rows(config.resolved(), Path(out))
        if done is not None:
            return done
    trainer = Trainer(config)
    c = trainer.config
    table = CsvJournal(Path(out)) if out is not None else None
    rows: list[dict[str, Any]] = []
    ckpt = checkpoint_path(Path(out)) if out is not None else None
    if table is not None and ckpt is not None:
        existing = table.rows()
        if existing and not _same_run(existing[0], c):
            raise ValueError(
                f"out={str(out)!r} already holds a different run ({existing[0].get('estimator')!r}); choose another path"
            )
        if existing and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            if state["identity"] != c.identity():
                raise ValueError(
                    f"checkpoint {str(ckpt)!r} was written with other settings; remove it or choose another out"
                )
            trainer.load_state_dict(state)
            rows = [r for r in existing if int(r["step"]) <= trainer.step]
            if len(rows) != len(existing):
                table.rewrite(rows)
            if rows and rows[-1].get("status", "ok") != "ok":
                return rows
        elif existing:  # rows but no checkpoint: nothing to resume from, start again
            table.path.unlink()
            table.columns = None

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        if table is not None and ckpt is not None:
            table.append(row)
            _save_checkpoint(ckpt, trainer.state_dict())

    if not rows:
        record(trainer.initial_row())
    bar = tqdm(
        total=c.steps, initial=trainer.step, disable=not progress, desc=f"{c.problem}/{c.estimator}", leave=False
    )
    with bar:
        for row in trainer.run():
            record(row)
            bar.set_postfix({k: f"{row[k]:.4g}" for k in trainer.metric_columns("test")[:1]}, refresh=False)
            bar.update(1)
    return rows


def progress_enabled() -> bool:
    return sys.stderr.isatty()
