"""What a setup needs to fit a model: the config, the decoded splits and a model factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from funduslab.config import RunConfig
from funduslab.data.split_data import SplitData
from funduslab.data.table import SampleTable

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """Inputs shared by every setup of one run."""

    cfg: RunConfig
    table: SampleTable
    splits: dict[str, SplitData]
    run_dir: Path
    cache_dir: Path
    data_fingerprint: str
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def train(self) -> SplitData:
        return self.splits[self.cfg.data.train_split]

    @property
    def val(self) -> SplitData | None:
        return self.splits.get(self.cfg.data.val_split)

    @property
    def kind(self):  # -> funduslab.training.task_kinds.TaskKind
        """The table's task kind (multilabel, grading): targets, outputs, loss, evaluation."""
        from funduslab.training.task_kinds import task_kind

        return task_kind(self.table.task)
