"""Trace DBs → fine-tuning datasets: selection, conversion, validation, atomic output.

* :mod:`~synth_cli.dataset.convert`: call records → OpenAI chat examples (calls and sessions mode);
* :mod:`~synth_cli.store.selection` (not here: dataset/ holds no SQL): session filters, scans;
* :mod:`~synth_cli.dataset.run`: `filter`'s entry point (`run_filter`), one process or several;
* :mod:`~synth_cli.dataset.build`: converting the kept sessions in one process, and the stats;
* :mod:`~synth_cli.dataset.history`: each history message of a session parsed, converted, checked,
  scrubbed and serialised once (agents resend their whole conversation with every call);
* :mod:`~synth_cli.dataset.parallel`: the same work split over worker processes (same bytes);
* :mod:`~synth_cli.dataset.redact`: secrets (and with `--redact pii`, e-mails and phones) scrubbed;
* :mod:`~synth_cli.dataset.together`: the dataset compiled for Together's conversational format;
* :mod:`~synth_cli.dataset.validate`: OpenAI chat fine-tuning validation of JSONL files;
* :mod:`~synth_cli.dataset.options`: flags and TOML config;
* :mod:`~synth_cli.dataset.writer`: atomic output files.

Nothing in this package prints; commands render what it returns.
"""
