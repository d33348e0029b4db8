"""The one interface `sft` talks to, whatever trains the model: :class:`Provider`.

A provider is one module in `synth_cli/api/`:

* `openai_compat` — OpenAI's files + fine-tuning contract, which Synth backends and
  `synth-ai serve` (under `/v1`) also follow. The default.
* `together` — Together AI's files + fine-tunes contract (`synth-ai serve` under `/together/v1`).

Choosing one (`open_provider`): `--provider` > `SYNTH_PROVIDER` > inferred from a well-known base
URL (`api.openai.com`, `api.together.xyz` / `api.together.ai`, a `…/together/v1` path of `serve`)
> `openai`. Base URL: `--base-url` > the SYNTH_* variables > the provider's own default. Key:
`--api-key` > SYNTH_BACKEND_API_KEY > SYNTH_API_KEY > the provider's variable (`OPENAI_API_KEY`,
`TOGETHER_API_KEY`) > DEFAULT_DEV_API_KEY. Every operation takes and returns the typed objects of
`synth_cli.api.types`; what a provider cannot do raises :class:`UnsupportedError`. Commands
never branch on the provider. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable


if TYPE_CHECKING:  # pragma: no cover
    from synth_cli.api.client import ApiClient
    from synth_cli.api.types import Checkpoint, FileObject, Job, JobEvent, ModelLimits, PriceEstimate

PROVIDERS = ("openai", "together")
PROVIDER_VAR = "SYNTH_PROVIDER"

ProgressCallback = Callable[[int, int], None]


@dataclass
class JobSpec:
    """A fine-tuning job as the user asked for it, before a provider turns it into its request body."""

    model: str
    training_file: str = ""
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    learning_rate_multiplier: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # --param KEY=VALUE, provider-specific
    #: what the CLI records about the data (dataset name, sha256); sent where the API has job metadata
    recorded: dict[str, str] = field(default_factory=dict)


@dataclass
class ParamDoc:
    key: str
    kind: str  # "int" | "float" | "bool" | "str" | "choice"
    help: str
    choices: tuple[str, ...] = ()


class Provider:
    """Base class: the operations `sft` needs. Subclasses implement them for one contract."""

    name = "?"
    label = "?"
    key_var = ""
    default_base_url = ""
    #: "asc" when the provider lists events oldest first by contract; None: let the cursor find out
    event_order: str | None = None
    #: documented `--param` keys
    params: tuple[ParamDoc, ...] = ()

    def __init__(self, client: ApiClient):
        self.client = client

    # -- lifecycle
    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def _unsupported(self, what: str, hint: str | None = None) -> Exception:
        from synth_cli.api.errors import UnsupportedError

        return UnsupportedError(f"{self.label} has no {what}", hint=hint)

    # -- files and jobs
    def upload_file(self, path: Path, *, progress: ProgressCallback | None = None) -> FileObject:
        raise NotImplementedError

    def build_job_request(self, spec: JobSpec) -> dict[str, Any]:
        raise NotImplementedError

    def create_job(self, spec: JobSpec) -> Job:
        raise NotImplementedError

    def retrieve(self, job_id: str) -> Job:
        raise NotImplementedError

    def iter_jobs(self, *, limit: int | None = None) -> Iterator[Job]:
        raise NotImplementedError

    def cancel(self, job_id: str) -> Job:
        raise NotImplementedError

    def pause(self, job_id: str) -> Job:
        raise self._unsupported("pausing of jobs", "cancel it with `synth-ai sft cancel JOB` instead")

    def resume(self, job_id: str) -> Job:
        raise self._unsupported("resuming of paused jobs")

    def list_events(self, job_id: str, *, after: str | None = None, limit: int | None = None
                    ) -> tuple[list[JobEvent], bool]:
        """One page of events (the provider's order) and whether more follow."""
        raise NotImplementedError

    def training_metrics(self, job_id: str) -> list[dict[str, float]] | None:
        """Step/loss points from a metrics endpoint, for providers whose events carry no losses (None: none)."""
        return None

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        raise NotImplementedError

    def predictions(self, job_id: str, *, epoch: int | None = None, limit: int | None = None,
                    offset: int | None = None) -> dict[str, Any]:
        raise self._unsupported("training predictions (a Synth backend and `synth-ai serve` record them)")

    def prediction_trends(self, job_id: str) -> dict[str, Any]:
        raise self._unsupported("prediction trends (a Synth backend and `synth-ai serve` record them)")

    # -- before a job
    def estimate_price(self, spec: JobSpec) -> PriceEstimate | None:
        """The provider's own estimate for an uploaded training file (None: it has no estimate endpoint)."""
        return None

    def model_limits(self, model: str) -> ModelLimits | None:
        return None

    def balance_usd(self) -> float | None:
        """The account balance when the backend reports one (None otherwise)."""
        return None

    def prepare_file(self, path: Path, model: str, workdir: Path, what: str = "training file"
                     ) -> tuple[Path, list[str]]:
        """(the file to upload for local `path`, what was converted): the provider's format where it
        differs (written under `workdir`), or `path` itself. Refusals raise a DatasetError naming the lines."""
        return path, []

    def dataset_report(self, path: str | Path, model: str | None):
        """The provider's format check of a local file (None: the OpenAI rules are all there is)."""
        return None

    def price_key(self) -> str:
        """Which `[[training]]` rows of the price table apply."""
        return self.name


# --------------------------------------------------------------------------- choosing one
