"""Training data (docs/design.md §4–5): decision points → contexts → scenarios x labels
(hindsight's, or a teacher's) → faithful reasoning → conversations split by date.

`calendar` (decision points) → `context` (the vectorised context frame and the `Context`
model) → `prompt` (rendering and the facts it states) → `scenarios` (ten portfolio states)
→ `labels` (outcomes, conviction, decisions) → `teachers` (the other labellers' decision
tables, from signal sources the caller passes in) → `reasoning` (the assistant's words) →
`faithfulness` (the checker) → `build` (streamed, sharded, split output).
"""

from synthpm.context import Context, Contexts, PortfolioState
from synthpm.dataset.build import DatasetConfig, build_dataset
from synthpm.dataset.calendar import decision_points
from synthpm.dataset.context import build_contexts
from synthpm.dataset.labels import LabelConfig
from synthpm.dataset.prompt import SYSTEM_PROMPT, render_prompt
from synthpm.dataset.scenarios import SCENARIOS
from synthpm.dataset.teachers import TEACHERS, teacher_table

__all__ = [
    "SCENARIOS",
    "SYSTEM_PROMPT",
    "TEACHERS",
    "Context",
    "Contexts",
    "DatasetConfig",
    "LabelConfig",
    "PortfolioState",
    "build_contexts",
    "build_dataset",
    "decision_points",
    "render_prompt",
    "teacher_table",
]
