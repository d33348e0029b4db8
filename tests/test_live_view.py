"""The live view's figures: the loss sparkline spans the whole run (downsampled, not the last 32
points), the validation loss and an ETA are shown."""

from __future__ import annotations

from types import SimpleNamespace

from synth_cli.api.follow import TrainingProgress
from synth_cli.api.types import Job, JobEvent
from synth_cli.commands._live import SPARK, LiveRenderer, sparkline


def test_sparkline_covers_the_whole_run_on_one_scale():
    losses = [2.0 * 0.98 ** i for i in range(135)]  # 2.00 falling to ~0.13, flat-looking at the end
    line = sparkline(losses)
    assert len(line) == 32
    assert line[0] == SPARK[-1] and line[-1] == SPARK[0]  # the start is high, the end low
    assert sparkline(losses[:10]) == sparkline(losses[:10], width=32) and len(sparkline(losses[:10])) == 10
    assert sparkline([]) == "" and sparkline([1.0, float("nan")]) == SPARK[len(SPARK) // 2]


def test_live_view_shows_valid_loss_and_an_eta(monkeypatch):
    from io import StringIO

    from rich.console import Console

    from synth_cli.output import Output

    progress = TrainingProgress()
    clock = iter([100.0, 110.0, 120.0, 130.0])
    import time

    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    out = Output()
    out._console = Console(file=StringIO(), width=120, force_terminal=False)
    view = LiveRenderer(out, "ftjob-abc", model="m")
    texts = []
    for step in (10, 20):
        progress.update(JobEvent.from_openai({"id": f"e{step}", "type": "metrics", "message": "", "created_at": 1,
                                              "data": {"step": step, "total_steps": 100, "train_loss": 2.0 / step,
                                                       "valid_loss": 0.5}}))
        view.follower = SimpleNamespace(job=Job(id="ftjob-abc", model="m", status="running"), elapsed=5.0,
                                        progress=progress)
        capture = Console(file=StringIO(), width=120, record=True)
        capture.print(view.__rich__())
        texts.append(capture.export_text())
    assert "ETA" not in texts[0]  # one point gives no pace yet
    assert "step 20/100 (20%) · ETA 1m20s" in texts[1]  # 10 steps in 10 s, 80 to go
    assert "valid loss 0.5000" in texts[1] and "from 0.2000" in texts[1]
