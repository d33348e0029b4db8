"""The job runner: a background thread that moves jobs along, driven by persisted state only.

A job row carries its position (`status`, `step`) and when its next action is due (`next_at`,
wall-clock seconds). Each tick, the runner performs every action that is due, one transaction
per action, re-reading the job inside the transaction so a concurrent cancel always wins.
After a restart, active jobs are rescheduled to continue from where they stopped.

    validating_files ─(dataset checks)→ queued → running ─(one action per step)→ succeeded
           └─────────→ failed (error.code)            cancel at any point → cancelled
                                         running ⇄ paused (pause / resume: the step is kept)
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from typing import Any

from synth_cli.devserver import billing, simulate
from synth_cli.devserver.store import Store, new_id, now

#: OpenAI refuses training files with fewer examples (error code `invalid_n_examples`).
MIN_TRAINING_EXAMPLES = 10
ACTIVE = ("validating_files", "queued", "running")
#: a running job the user paused: it keeps its step and does not advance until resumed.
PAUSED = "paused"
TERMINAL = ("succeeded", "failed", "cancelled")
#: at most this many actions per job per tick, so one fast job cannot starve the others.
MAX_ACTIONS_PER_TICK = 200
#: longest sleep of the runner between two looks at the DB.
IDLE_WAIT = 1.0
#: the columns of a job's result file (`step_metrics.csv`), as OpenAI writes them.
RESULTS_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def fine_tuned_model_name(model: str, suffix: str | None, job_id: str) -> str:
    return f"ft:{model}:{suffix or 'synth'}:{job_id}"


class Engine:
    """Advances jobs; `start()` runs it in a daemon thread until `stop()`."""

    def __init__(self, store: Store, *, step_seconds: float):
        self.store = store
        self.step_seconds = float(step_seconds)
        self.tick = min(0.25, max(0.005, self.step_seconds / 2))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.store.reschedule_active(time.time() + self.step_seconds)
        self._thread = threading.Thread(target=self._loop, name="synth-serve-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # noqa: BLE001 - keep simulating; the log shows what happened
                sys.stderr.write("synth-ai serve: job runner error\n" + traceback.format_exc())
                sys.stderr.flush()
            self._wake.wait(self._until_next_action())
            self._wake.clear()

    def _until_next_action(self) -> float:
        """Seconds to sleep: until the next due action, at most IDLE_WAIT (creating or resuming a job
        wakes the runner early), so an idle server does not poll its DB every tick."""
        try:
            due = self.store.next_due()
        except Exception:  # noqa: BLE001 - the next run_due reports it
            return self.tick
        if due is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, due - time.time()))

    def run_due(self, at: float | None = None) -> int:
        """Perform every due action; returns how many were performed."""
        done = 0
        for job_id in self.store.due_jobs(time.time() if at is None else at):
            for _ in range(MAX_ACTIONS_PER_TICK):
                if self._stop.is_set():
                    return done
                try:
                    advanced = self.advance(job_id, time.time() if at is None else at)
                except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
                    sys.stderr.write(f"synth-ai serve: job {job_id} failed in the simulator\n" + traceback.format_exc())
                    sys.stderr.flush()
                    with self.store.tx() as c:
                        self._fail(c, job_id, "server_error", f"The simulator failed on this job ({type(exc).__name__}).",
                                   None)
                    break
                if not advanced:
                    break
                done += 1
        return done

    # -- one action ---------------------------------------------------------------------------
    def advance(self, job_id: str, at: float) -> bool:
        """Perform the job's next action if it is due. False when nothing was due."""
        with self.store.tx() as c:
            job = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None or job["status"] not in ACTIVE or job["next_at"] > at:
                return False
            next_at = job["next_at"] + self.step_seconds
            if job["status"] == "validating_files":
                self._validate(c, job, next_at)
            elif job["status"] == "queued":
                finish = int(time.time() + (job["total_steps"] + 1) * self.step_seconds) + 1
                c.execute("UPDATE jobs SET status = 'running', next_at = ?, estimated_finish = ? WHERE id = ?",
                          (next_at, finish, job_id))
                Store.add_event(c, job_id, "Fine-tuning job started")
            else:
                self._step(c, job, next_at)
            return True

    def _validate(self, c, job, next_at: float) -> None:
        job_id = job["id"]
        missing = [f for f in (job["training_file"], job["validation_file"])
                   if f and c.execute("SELECT 1 FROM files WHERE id = ?", (f,)).fetchone() is None]
        if missing:
            param = "training_file" if missing[0] == job["training_file"] else "validation_file"
            self._fail(c, job_id, "invalid_" + param, f"{param} {missing[0]} was deleted before the job could read it",
                       param)
            return
        if job["n_examples"] < MIN_TRAINING_EXAMPLES:
            self._fail(c, job_id, "invalid_n_examples",
                       f"Training file has {job['n_examples']} example(s), but must have at least "
                       f"{MIN_TRAINING_EXAMPLES} examples", "training_file")
            return
        c.execute("UPDATE jobs SET status = 'queued', next_at = ? WHERE id = ?", (next_at, job_id))
        Store.add_event(c, job_id, "Files validated, moving job to queued state")

    def _fail(self, c, job_id: str, code: str, message: str, param: str | None) -> None:
        error = {"code": code, "message": message, "param": param}
        c.execute("UPDATE jobs SET status = 'failed', finished_at = ?, estimated_finish = NULL, error = ? WHERE id = ?",
                  (now(), json.dumps(error), job_id))
        Store.add_event(c, job_id, message, level="error")

    def _step(self, c, job, next_at: float) -> None:
        job_id = job["id"]
        step = job["step"] + 1
        steps = job["total_steps"]
        hp = simulate.Hyperparameters(job["n_epochs"], job["batch_size"], job["learning_rate_multiplier"])
        ends = simulate.epoch_end_steps(job["n_examples"], hp)
        metrics = simulate.step_metrics(job["seed"], step, steps, job["learning_rate_multiplier"],
                                        with_validation=bool(job["validation_file"]))
        message = f"Step {step}/{steps}: training loss={metrics['train_loss']:.4f}"
        if "valid_loss" in metrics:
            message += f", validation loss={metrics['valid_loss']:.4f}"
        Store.add_event(c, job_id, message, kind="metrics", data=metrics)
        c.execute("UPDATE jobs SET step = ?, next_at = ? WHERE id = ?", (step, next_at, job_id))
        if step in ends:
            self._end_of_epoch(c, job, ends.index(step) + 1, step, metrics)
        if step >= steps:
            self._succeed(c, job, steps)

    def _end_of_epoch(self, c, job, epoch: int, step: int, metrics: dict[str, Any]) -> None:
        job_id = job["id"]
        created = now()
        name = fine_tuned_model_name(job["model"], job["suffix"], job_id) + f":ckpt-step-{step}"
        checkpoint_metrics = {k: v for k, v in metrics.items() if k not in ("total_steps",)}
        checkpoint_metrics["step"] = float(step)
        if "valid_loss" in metrics:
            checkpoint_metrics["full_valid_loss"] = metrics["valid_loss"]
            checkpoint_metrics["full_valid_mean_token_accuracy"] = metrics["valid_mean_token_accuracy"]
        c.execute("INSERT INTO checkpoints (id, job_id, created_at, step_number, fine_tuned_model_checkpoint, metrics) "
                  "VALUES (?, ?, ?, ?, ?, ?)", (new_id("ftckpt_"), job_id, created, step, name,
                                                json.dumps(checkpoint_metrics)))
        Store.add_event(c, job_id, f"Checkpoint created at step {step} (epoch {epoch}/{job['n_epochs']})",
                        data={"step": step, "epoch": epoch, "fine_tuned_model_checkpoint": name})
        samples = json.loads(job["samples"])
        rows = simulate.prediction_rows(samples, job["seed"], epoch, job["n_epochs"], step, created)
        for row in rows:
            c.execute(
                "INSERT INTO predictions (id, job_id, epoch, step, sample_index, prompt, ground_truth, prediction, "
                "exact_match, char_error_rate, length_ratio, word_overlap, prompt_tokens, completion_tokens, "
                "latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new_id("pred-"), job_id, epoch, step, row["sample_index"], row["prompt"], row["ground_truth"],
                 row["prediction"], int(row["exact_match"]), row["char_error_rate"], row["length_ratio"],
                 row["word_overlap"], row["prompt_tokens"], row["completion_tokens"], row["latency_ms"],
                 row["created_at"]))
        if rows:
            avg = sum(r["word_overlap"] for r in rows) / len(rows)
            exact = sum(1 for r in rows if r["exact_match"])
            Store.add_event(c, job_id, f"Epoch {epoch}/{job['n_epochs']} predictions: {len(rows)} training prompts, "
                                       f"word overlap {avg:.3f}, {exact} exact",
                            data={"epoch": epoch, "step": step, "avg_word_overlap": round(avg, 6),
                                  "exact_matches": exact, "sample_count": len(rows)})

    def _succeed(self, c, job, steps: int) -> None:
        job_id = job["id"]
        trained_tokens = int(job["example_tokens"]) * int(job["n_epochs"])
        model_name = fine_tuned_model_name(job["model"], job["suffix"], job_id)
        finished = now()
        c.execute("UPDATE jobs SET status = 'succeeded', finished_at = ?, estimated_finish = NULL, "
                  "trained_tokens = ?, fine_tuned_model = ? WHERE id = ?", (finished, trained_tokens, model_name, job_id))
        seconds = billing.gpu_seconds(steps, trained_tokens)
        token_cents = billing.token_charge_cents(job["model"], trained_tokens)
        gpu_cents = billing.gpu_charge_cents(seconds)
        c.execute("INSERT OR IGNORE INTO ledger (owner, job_id, model, kind, quantity, amount_cents, created_at) "
                  "VALUES (?, ?, ?, 'tokens', ?, ?, ?)", (job["owner"], job_id, job["model"], trained_tokens,
                                                          token_cents, finished))
        c.execute("INSERT OR IGNORE INTO ledger (owner, job_id, model, kind, quantity, amount_cents, created_at) "
                  "VALUES (?, ?, ?, 'gpu', ?, ?, ?)", (job["owner"], job_id, job["model"], seconds, gpu_cents, finished))
        results = self._write_results_file(c, job)
        c.execute("UPDATE jobs SET result_files = ? WHERE id = ?", (json.dumps([results]), job_id))
        Store.add_event(c, job_id, f"New fine-tuned model created: {model_name}",
                        data={"fine_tuned_model": model_name, "trained_tokens": trained_tokens})
        Store.add_event(c, job_id, f"Charged ${(token_cents + gpu_cents) / 100:.2f}: {trained_tokens:,} trained tokens "
                                   f"(${token_cents / 100:.2f}) and {seconds:,.0f} simulated GPU seconds "
                                   f"(${gpu_cents / 100:.2f})",
                        data={"token_spend_cents": token_cents, "gpu_spend_cents": gpu_cents,
                              "total_spend_cents": token_cents + gpu_cents})
        Store.add_event(c, job_id, "The job has successfully completed")


    def _write_results_file(self, c, job) -> str:
        """The job's result file, as OpenAI makes one: `step_metrics.csv` (purpose `fine-tune-results`),
        one row per step from the metrics events; returns its file id."""
        import hashlib

        lines = [",".join(RESULTS_COLUMNS)]
        for (data,) in c.execute("SELECT data FROM events WHERE job_id = ? AND type = 'metrics' ORDER BY seq",
                                 (job["id"],)):
            metrics = json.loads(data)
            row = {**metrics, "train_accuracy": metrics.get("train_mean_token_accuracy")}
            lines.append(",".join("" if row.get(k) is None else str(row[k]) for k in RESULTS_COLUMNS))
        body = ("\n".join(lines) + "\n").encode("utf-8")
        file_id = new_id("file-")
        path = self.store.blob_path(file_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        tmp.replace(path)
        c.execute("INSERT INTO files (id, owner, filename, purpose, bytes, created_at, expires_at, sha256) "
                  "VALUES (?, ?, 'step_metrics.csv', 'fine-tune-results', ?, ?, NULL, ?)",
                  (file_id, job["owner"], len(body), now(), hashlib.sha256(body).hexdigest()))
        return file_id


def cancel(store: Store, owner: str, job_id: str) -> tuple[str, Any]:
    """('ok', row) | ('missing', None) | ('finished', row)."""
    with store.tx() as c:
        job = c.execute("SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        if job is None:
            return "missing", None
        if job["status"] in ACTIVE or job["status"] == PAUSED:
            c.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, estimated_finish = NULL WHERE id = ?",
                      (now(), job_id))
            Store.add_event(c, job_id, "Fine-tuning job cancelled by the user")
        elif job["status"] != "cancelled":
            return "finished", job
        return "ok", c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()


def pause(store: Store, owner: str, job_id: str) -> tuple[str, str | None]:
    """A running job stops advancing: ('ok', None) | ('missing', None) | ('refused', status).
    Pausing a paused job is a no-op (a retried request gets the same answer)."""
    with store.tx() as c:
        job = c.execute("SELECT status FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone()
        if job is None:
            return "missing", None
        if job["status"] == "running":
            c.execute("UPDATE jobs SET status = ?, estimated_finish = NULL WHERE id = ?", (PAUSED, job_id))
            Store.add_event(c, job_id, "Fine-tuning job paused by the user")
        elif job["status"] != PAUSED:
            return "refused", job["status"]
        return "ok", None


def resume(store: Store, owner: str, job_id: str, step_seconds: float) -> tuple[str, str | None]:
    """A paused job continues from its step: ('ok', None) | ('missing', None) | ('refused', status).
    Resuming a running job is a no-op."""
    with store.tx() as c:
        job = c.execute("SELECT status, step, total_steps FROM jobs WHERE id = ? AND owner = ?",
                        (job_id, owner)).fetchone()
        if job is None:
            return "missing", None
        if job["status"] == PAUSED:
            at = time.time()
            finish = int(at + (job["total_steps"] - job["step"] + 1) * step_seconds) + 1
            c.execute("UPDATE jobs SET status = 'running', next_at = ?, estimated_finish = ? WHERE id = ?",
                      (at + step_seconds, finish, job_id))
            Store.add_event(c, job_id, f"Fine-tuning job resumed at step {job['step']}/{job['total_steps']}")
        elif job["status"] != "running":
            return "refused", job["status"]
        return "ok", None
